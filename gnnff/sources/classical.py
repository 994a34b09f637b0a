"""Classical parameter source: OpenFF Sage assigned with ``ForceField.label_molecules``.

Two releases (:data:`SAGE_RELEASES`), told apart by data only (:class:`SageRelease`):
model ``"sage"`` is Sage 2.2 (``openff-2.2.0.offxml``) with AM1-BCC charges, model
``"sage-2.3"`` Sage 2.3.0 (``openff_unconstrained-2.3.0.offxml``) with the charges of its
``<NAGLCharges>`` section, the NAGL model ``openff-gnn-am1bcc-1.0.0.pt`` (charge method
``"nagl"``). A force field with a section or setting gnnff's Systems cannot carry (virtual
sites, other 1-4 scales, ...) is refused by name when it is loaded.

Sage's SMIRNOFF parameters are converted into gnnff's containers (OpenMM units):

- bonds and angles: SMIRNOFF harmonic terms are ``k/2 (x - x0)^2`` like ours;
- proper torsions: ``k_n / idivf_n`` per periodicity; when a Sage parameter lists one
  periodicity twice (two SMIRKS in Sage 2.2 do), the two cosines are merged into one
  with a general phase: the same forces, an energy shifted by a constant;
- impropers: Sage applies ``k / idivf`` (idivf 3, "auto") to each of the three
  trefoil torsions; our centre total is ``3 k / idivf``;
- Lennard-Jones: sigma (or r_min/2 converted) and epsilon per atom;
- charges: Sage's library charges where they cover the molecule (water, ions),
  otherwise :func:`gnnff.sources.charges.assign_charges` (the release's charge method
  by default).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rdkit import Chem

from gnnff.chem.molecule import check_elements
from gnnff.chem.topology import Topology
from gnnff.errors import ModelError, ParametrizationError, first_line
from gnnff.schema import (
    ANGLES,
    BONDS,
    COULOMB_14_SCALE,
    IMPROPERS,
    LJ_14_SCALE,
    NONBONDED,
    PROPERS,
    AngleParameters,
    BondParameters,
    ForceFieldParameters,
    ImproperParameters,
    NonbondedParameters,
    ProperParameters,
    unit_of,
)
from gnnff.sources.charges import assign_charges, unavailable
from gnnff.units import RMIN_HALF_TO_SIGMA

__all__ = ["SAGE_ELEMENTS", "SAGE_RELEASES", "SageRelease", "SageSource"]

SAGE_OFFXML = "openff-2.2.0.offxml"
#: Elements Sage has parameters for (ions by library charges).
SAGE_ELEMENTS = frozenset({1, 6, 7, 8, 9, 15, 16, 17, 35, 53, 3, 11, 19, 37, 55})


@dataclass(frozen=True)
class SageRelease:
    """What tells one Sage release apart in gnnff: everything else is the same code path.

    Attributes
    ----------
    name
        Model registry name.
    title
        What ``gnnff models`` calls it.
    offxml
        SMIRNOFF file known to the OpenFF toolkit.
    charges
        Default charge method (:data:`gnnff.sources.charges.CHARGE_METHODS`): the release's own.
    elements
        Atomic numbers covered (monatomic ions by library charges).
    """

    name: str
    title: str
    offxml: str
    charges: str
    elements: frozenset[int]


#: Registry name -> release. ``sage`` keeps Sage 2.2: its outputs do not change.
SAGE_RELEASES: dict[str, SageRelease] = {r.name: r for r in (
    SageRelease("sage", "OpenFF Sage 2.2 + AM1-BCC", SAGE_OFFXML, "am1bcc", SAGE_ELEMENTS),
    # NAGL covers H C N O F P S Cl Br I; the ions are library charges, as in Sage 2.2
    SageRelease("sage-2.3", "OpenFF Sage 2.3.0 + NAGL openff-gnn-am1bcc-1.0.0",
                "openff_unconstrained-2.3.0.offxml", "nagl", SAGE_ELEMENTS),
)}

# OpenFF quantities are converted to the schema's units (pint reads them as written there)
_Q, _SIGMA, _EPS = (unit_of(NONBONDED, name) for name in ("charge", "sigma", "epsilon"))
_BOND_K, _BOND_LENGTH = unit_of(BONDS, "k"), unit_of(BONDS, "length")
_ANGLE_K, _ANGLE = unit_of(ANGLES, "k"), unit_of(ANGLES, "angle")
_TORSION_K, _PHASE = unit_of(PROPERS, "k"), unit_of(PROPERS, "phase")


#: SMIRNOFF sections gnnff carries (Constraints: left to the simulation, as ``constraints=HBonds``).
_SECTIONS = frozenset({"Constraints", "Bonds", "Angles", "ProperTorsions", "ImproperTorsions", "vdW",
                       "Electrostatics", "LibraryCharges", "ToolkitAM1BCC", "NAGLCharges"})
#: (section, attribute) -> the value gnnff's Systems are built with.
_SETTINGS = {("vdW", "scale12"): 0.0, ("vdW", "scale13"): 0.0, ("vdW", "scale14"): LJ_14_SCALE,
             ("vdW", "scale15"): 1.0, ("Electrostatics", "scale12"): 0.0,
             ("Electrostatics", "scale13"): 0.0, ("Electrostatics", "scale14"): COULOMB_14_SCALE,
             ("Electrostatics", "scale15"): 1.0}


@functools.lru_cache(maxsize=4)
def _force_field(offxml: str) -> Any:
    from openff.toolkit import ForceField

    force_field = ForceField(offxml)
    _check_supported(force_field, offxml)
    return force_field


def _check_supported(force_field: Any, offxml: str) -> None:
    """Raise ParametrizationError naming the first section or setting of ``offxml`` that
    gnnff's Systems (the schema's terms and 1-4 scales) cannot carry."""
    extra = sorted(set(force_field.registered_parameter_handlers) - _SECTIONS)
    if extra:
        raise ParametrizationError(f"{offxml}: gnnff cannot carry its section(s) {', '.join(extra)}; "
                                   f"use a force field with only {', '.join(sorted(_SECTIONS))}")
    vdw = force_field.get_parameter_handler("vdW")
    if vdw.potential != "Lennard-Jones-12-6" or vdw.combining_rules != "Lorentz-Berthelot":
        raise ParametrizationError(f"{offxml}: vdW {vdw.potential} with {vdw.combining_rules} combining; "
                                   "gnnff carries Lennard-Jones-12-6 with Lorentz-Berthelot only")
    for (section, attribute), value in _SETTINGS.items():
        got = float(getattr(force_field.get_parameter_handler(section), attribute))
        if abs(got - value) > 1e-8:
            raise ParametrizationError(f"{offxml}: {section} {attribute} is {got}; gnnff's Systems use {value:.10g}")


def _merge_cosines(terms: list[tuple[float, float]]) -> tuple[float, float]:
    """One ``(k, phase)`` with the same phi dependence as a sum of same-n cosines."""
    if len(terms) == 1:
        return terms[0]
    a = sum(k * math.cos(p) for k, p in terms)
    b = sum(k * math.sin(p) for k, p in terms)
    return math.hypot(a, b), math.atan2(b, a)


class SageSource:
    """OpenFF Sage valence and Lennard-Jones parameters with the release's charges: Sage 2.2
    with AM1-BCC (``release="sage"``), Sage 2.3.0 with NAGL (``release="sage-2.3"``).

    Parameters
    ----------
    charges
        Charge method for molecules Sage has no library charges for; one of
        :data:`gnnff.sources.charges.CHARGE_METHODS`. Default: the release's.
    offxml
        SMIRNOFF force field file known to the OpenFF toolkit. Default: the release's.
    release
        A :data:`SAGE_RELEASES` name; also the source's ``name``.
    """

    def __init__(self, *, charges: str | None = None, offxml: str | None = None, release: str = "sage") -> None:
        if release not in SAGE_RELEASES:
            raise ModelError(f"unknown Sage release '{release}'; known: {', '.join(SAGE_RELEASES)}")
        self.release = SAGE_RELEASES[release]
        self.name = release
        self.charges = charges if charges is not None else self.release.charges
        self.offxml = offxml if offxml is not None else self.release.offxml
        missing = unavailable(self.charges)
        if missing is not None:
            raise ModelError(f"model '{release}': {missing}")

    def __repr__(self) -> str:  # the template cache's fingerprint: unchanged for "sage"
        tail = f", release={self.name!r}" if self.name != "sage" else ""
        return f"SageSource(charges={self.charges!r}, offxml={self.offxml!r}{tail})"

    def parameters(self, mol: Chem.Mol, topology: Topology) -> ForceFieldParameters:
        """Assign Sage parameters to ``mol``; rows follow ``topology``."""
        label = mol.GetProp("_Name") if mol.HasProp("_Name") else "molecule"
        labels = self._labels(mol, label)
        return ForceFieldParameters(
            bonds=_bonds(labels["Bonds"], topology, label),
            angles=_angles(labels["Angles"], topology, label),
            propers=_propers(labels["ProperTorsions"], topology, label),
            impropers=_impropers(labels["ImproperTorsions"], topology, label),
            nonbonded=self._nonbonded(labels, mol, topology),
        )

    def _labels(self, mol: Chem.Mol, label: str) -> dict:
        check_elements(mol, self.release.elements, label=label, owner="Sage", shipped=SAGE_ELEMENTS)  # before any slow import
        from openff.toolkit import Molecule

        with warnings.catch_warnings():
            # salts: the toolkit warns about several components; we treat them as one molecule
            warnings.simplefilter("ignore")
            offmol = Molecule.from_rdkit(mol, allow_undefined_stereo=True, hydrogens_are_explicit=True)
        try:
            return _force_field(self.offxml).label_molecules(offmol.to_topology())[0]
        except ParametrizationError:  # a force field gnnff cannot carry: already named
            raise
        except Exception as err:  # the toolkit raises many types; report them as one
            raise ParametrizationError(f"{label}: Sage could not label the molecule ({first_line(err)})") from None

    def lennard_jones(self, mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
        """Sage's sigma (nm) and epsilon (kJ/mol) per atom of ``mol``, without charges."""
        label = mol.GetProp("_Name") if mol.HasProp("_Name") else "molecule"
        return _lennard_jones(self._labels(mol, label), mol.GetNumAtoms())

    def _nonbonded(self, labels: dict, mol: Chem.Mol, topology: Topology) -> NonbondedParameters:
        n = topology.n_atoms
        sigma, epsilon = _lennard_jones(labels, n)
        library = labels.get("LibraryCharges", {})
        if len(library) == n:
            charge = np.zeros(n)
            for (i,), p in library.items():
                charge[i] = p.charge[0].m_as(_Q)
            charge -= (charge.sum() - topology.net_charge) / n
        else:
            charge = assign_charges(mol, self.charges)
        return NonbondedParameters(charge=_t(charge), sigma=_t(sigma), epsilon=_t(epsilon))


def _lennard_jones(labels: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    sigma, epsilon = np.zeros(n), np.zeros(n)
    for (i,), p in labels["vdW"].items():
        s = p.sigma if p.sigma is not None else p.rmin_half * RMIN_HALF_TO_SIGMA
        sigma[i] = s.m_as(_SIGMA)
        epsilon[i] = p.epsilon.m_as(_EPS)
    return sigma, epsilon


def _t(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _row_lookup(indices: np.ndarray) -> dict[tuple[int, ...], int]:
    return {tuple(row): r for r, row in enumerate(indices.tolist())}


def _missing(label: str, what: str, key: tuple[int, ...], topology: Topology) -> ParametrizationError:
    from openmm.app.element import Element

    atoms = "-".join(f"{i}({Element.getByAtomicNumber(int(topology.atomic_numbers[i])).symbol})"
                     for i in key)
    return ParametrizationError(f"{label}: Sage has no {what} parameter for atoms {atoms}")


def _bonds(matches: dict, topology: Topology, label: str) -> BondParameters:
    rows = _row_lookup(topology.bonds)
    k, length = np.zeros(len(rows)), np.zeros(len(rows))
    seen = np.zeros(len(rows), dtype=bool)
    for key, p in matches.items():
        r = rows[tuple(sorted(key))]
        k[r], length[r], seen[r] = p.k.m_as(_BOND_K), p.length.m_as(_BOND_LENGTH), True
    if not seen.all():
        raise _missing(label, "bond", tuple(topology.bonds[np.argmin(seen)]), topology)
    return BondParameters(k=_t(k), length=_t(length))


def _angles(matches: dict, topology: Topology, label: str) -> AngleParameters:
    rows = _row_lookup(topology.angles)
    k, angle = np.zeros(len(rows)), np.zeros(len(rows))
    seen = np.zeros(len(rows), dtype=bool)
    for key, p in matches.items():
        r = rows[key if key[0] < key[2] else key[::-1]]
        k[r], angle[r], seen[r] = p.k.m_as(_ANGLE_K), p.angle.m_as(_ANGLE), True
    if not seen.all():
        raise _missing(label, "angle", tuple(topology.angles[np.argmin(seen)]), topology)
    return AngleParameters(k=_t(k), angle=_t(angle))


def _cosine_terms(p: Any, default_idivf: float) -> dict[int, list[tuple[float, float]]]:
    idivf = p.idivf if p.idivf is not None else [default_idivf] * len(p.k)
    by_n: dict[int, list[tuple[float, float]]] = {}
    for n, k, phase, div in zip(p.periodicity, p.k, p.phase, idivf):
        by_n.setdefault(int(n), []).append((k.m_as(_TORSION_K) / float(div), phase.m_as(_PHASE)))
    return by_n


def _propers(matches: dict, topology: Topology, label: str) -> ProperParameters:
    rows = _row_lookup(topology.propers)
    shape = (len(rows), len(PROPERS.periodicities))
    k, phase = np.zeros(shape), np.zeros(shape)
    seen = np.zeros(len(rows), dtype=bool)
    for key, p in matches.items():
        r = rows[key if key[1] < key[2] else key[::-1]]
        seen[r] = True
        for n, terms in _cosine_terms(p, 1.0).items():
            c = PROPERS.periodicities.index(n)
            k[r, c], phase[r, c] = _merge_cosines(terms)
    if not seen.all():
        raise _missing(label, "proper torsion", tuple(topology.propers[np.argmin(seen)]), topology)
    return ProperParameters(k=_t(k), phase=_t(phase))


def _impropers(matches: dict, topology: Topology, label: str) -> ImproperParameters:
    rows = {int(c): r for r, c in enumerate(topology.impropers[:, 0].tolist())}
    shape = (len(rows), len(IMPROPERS.periodicities))
    k, phase = np.zeros(shape), np.zeros(shape)
    for key, p in matches.items():
        r = rows[key[1]]  # SMIRNOFF impropers name the central atom second
        for n, terms in _cosine_terms(p, 3.0).items():
            (kn, ph), = terms
            if n not in IMPROPERS.periodicities or not (abs(ph) < 1e-9 or abs(ph - math.pi) < 1e-9):
                raise ParametrizationError(
                    f"{label}: Sage improper on atom {key[1]} has periodicity {n} and phase {ph:.3f} rad; "
                    f"gnnff impropers take periodicities {IMPROPERS.periodicities} with phase 0 or pi"
                )
            c = IMPROPERS.periodicities.index(n)
            k[r, c], phase[r, c] = 3.0 * kn, ph
    return ImproperParameters(k=_t(k), phase=_t(phase))
