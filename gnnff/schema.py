"""The molecular-mechanics term schema: declared once, iterated everywhere.

Each term names its atom tuple and the order of atoms in it, its typed parameter
container (a frozen dataclass whose fields carry their units), the permutations of
the tuple that leave the term unchanged (the symmetry group used by symmetric
pooling and by tests), and the OpenMM force and force group it is exported to.

Functional forms (OpenMM conventions, internal units nm, kJ/mol, rad, e):

- bonds ``(i, j)``: ``0.5 k (r - length)^2``
- angles ``(i, j, k)``, ``j`` the vertex: ``0.5 k (theta - angle)^2``
- propers ``(i, j, k, l)``, bonds i-j, j-k, k-l:
  ``sum_n k_n (1 + cos(n phi - phase_n))``, ``n`` in :data:`PROPER_PERIODICITIES`
- impropers ``(c, a, b, d)``, ``c`` the trivalent centre bonded to a, b, d
  (trefoil): the centre's parameters are applied to the three cyclic orders of the
  outer atoms, OpenMM torsions ``(c, a, b, d)``, ``(c, b, d, a)``, ``(c, d, a, b)``,
  each with ``k_n / 3``. With phases 0 or pi the energy depends neither on which
  outer atom comes first nor on the handedness of the cycle (reversing it negates
  every dihedral, and cosine is even).
- nonbonded, per atom: Coulomb + Lennard-Jones 12-6 with Lorentz-Berthelot
  combining; 1-2 and 1-3 pairs excluded; 1-4 pairs scaled by
  :data:`COULOMB_14_SCALE` and :data:`LJ_14_SCALE`.

This module imports nothing from gnnff.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

__all__ = [
    "PROPER_PERIODICITIES",
    "IMPROPER_PERIODICITIES",
    "COULOMB_14_SCALE",
    "LJ_14_SCALE",
    "BondParameters",
    "AngleParameters",
    "ProperParameters",
    "ImproperParameters",
    "NonbondedParameters",
    "Term",
    "BONDS",
    "ANGLES",
    "PROPERS",
    "IMPROPERS",
    "NONBONDED",
    "TERMS",
    "ForceFieldParameters",
    "parameter_fields",
]

PROPER_PERIODICITIES: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
IMPROPER_PERIODICITIES: tuple[int, ...] = (1, 2)
COULOMB_14_SCALE = 1.0 / 1.2
LJ_14_SCALE = 0.5


def _param(unit: str, doc: str, *, periodic: bool = False) -> Any:
    """A dataclass field for a parameter tensor, with its unit and meaning."""
    return field(metadata={"unit": unit, "doc": doc, "periodic": periodic})


@dataclass(frozen=True)
class BondParameters:
    """Harmonic bonds. Every field has shape ``(n_bonds,)``."""

    k: torch.Tensor = _param("kJ/mol/nm**2", "force constant")
    length: torch.Tensor = _param("nm", "equilibrium length")


@dataclass(frozen=True)
class AngleParameters:
    """Harmonic angles. Every field has shape ``(n_angles,)``."""

    k: torch.Tensor = _param("kJ/mol/rad**2", "force constant")
    angle: torch.Tensor = _param("rad", "equilibrium angle")


@dataclass(frozen=True)
class ProperParameters:
    """Periodic proper torsions. Fields have shape ``(n_propers, len(PROPER_PERIODICITIES))``."""

    k: torch.Tensor = _param("kJ/mol", "barrier k_n, n in PROPER_PERIODICITIES", periodic=True)
    phase: torch.Tensor = _param("rad", "phase_n", periodic=True)


@dataclass(frozen=True)
class ImproperParameters:
    """Trefoil impropers, one row per trivalent centre.

    Fields have shape ``(n_impropers, len(IMPROPER_PERIODICITIES))``; ``k`` is the
    centre's total, each of the three torsions carries ``k / 3``.
    """

    k: torch.Tensor = _param("kJ/mol", "barrier k_n of the whole centre", periodic=True)
    phase: torch.Tensor = _param("rad", "phase_n (0 or pi)", periodic=True)


@dataclass(frozen=True)
class NonbondedParameters:
    """Per-atom nonbonded parameters. Every field has shape ``(n_atoms,)``."""

    charge: torch.Tensor = _param("e", "partial charge")
    sigma: torch.Tensor = _param("nm", "Lennard-Jones sigma")
    epsilon: torch.Tensor = _param("kJ/mol", "Lennard-Jones well depth")


@dataclass(frozen=True)
class Term:
    """One MM term of the schema.

    Attributes
    ----------
    name
        Name of the term; also the name of the ``Topology`` attribute holding its
        atom tuples and of the ``ForceFieldParameters`` field holding its parameters.
    arity
        Atoms per tuple (1 for per-atom terms).
    atom_order
        What the positions in a tuple mean.
    parameters
        The typed parameter container.
    symmetry
        Permutations of tuple positions under which the term and its parameters are
        invariant (the identity first). Symmetric heads pool over exactly these.
    expansion
        Atom orders each row is expanded to in the energy and the exported force
        (the trefoil for impropers), each carrying ``1 / len(expansion)`` of ``k``.
    periodicities
        Periodicities ``n`` of the columns of periodic parameters (empty if none).
    openmm_force
        Name of the standard OpenMM force class the term is exported to.
    force_group
        OpenMM force group of that force, one per term.
    """

    name: str
    arity: int
    atom_order: str
    parameters: type
    symmetry: tuple[tuple[int, ...], ...]
    expansion: tuple[tuple[int, ...], ...]
    periodicities: tuple[int, ...]
    openmm_force: str
    force_group: int

    def fields(self) -> tuple[dataclasses.Field, ...]:
        """The parameter fields of this term, in declaration order."""
        return dataclasses.fields(self.parameters)


_TREFOIL = ((0, 1, 2, 3), (0, 2, 3, 1), (0, 3, 1, 2))

BONDS = Term("bonds", 2, "(i, j) bonded", BondParameters,
             ((0, 1), (1, 0)), ((0, 1),), (), "HarmonicBondForce", 0)
ANGLES = Term("angles", 3, "(i, j, k), j the vertex", AngleParameters,
              ((0, 1, 2), (2, 1, 0)), ((0, 1, 2),), (), "HarmonicAngleForce", 1)
PROPERS = Term("propers", 4, "(i, j, k, l), bonds i-j, j-k, k-l", ProperParameters,
               ((0, 1, 2, 3), (3, 2, 1, 0)), ((0, 1, 2, 3),), PROPER_PERIODICITIES,
               "PeriodicTorsionForce", 2)
# Impropers: parameters invariant under every order of the outer atoms (the trefoil
# energy is, for phases 0 and pi); the energy expands each centre to the trefoil.
IMPROPERS = Term("impropers", 4, "(c, a, b, d), c the trivalent centre", ImproperParameters,
                 _TREFOIL + ((0, 1, 3, 2), (0, 3, 2, 1), (0, 2, 1, 3)), _TREFOIL,
                 IMPROPER_PERIODICITIES, "PeriodicTorsionForce", 3)
NONBONDED = Term("nonbonded", 1, "(i,) every atom", NonbondedParameters,
                 ((0,),), ((0,),), (), "NonbondedForce", 4)

#: All terms, in export order.
TERMS: tuple[Term, ...] = (BONDS, ANGLES, PROPERS, IMPROPERS, NONBONDED)


def parameter_fields(term: Term) -> Iterator[tuple[str, str]]:
    """Yield ``(parameter name, unit)`` for a term."""
    for f in term.fields():
        yield f.name, f.metadata["unit"]


@dataclass(frozen=True)
class ForceFieldParameters:
    """Parameters of every term of one molecule (or one batch of molecules).

    Rows follow the tuples of the matching ``Topology`` attribute.
    """

    bonds: BondParameters
    angles: AngleParameters
    propers: ProperParameters
    impropers: ImproperParameters
    nonbonded: NonbondedParameters

    def term(self, term: Term) -> Any:
        """The parameter container of ``term``."""
        return getattr(self, term.name)

    def map(self, fn) -> "ForceFieldParameters":
        """Apply ``fn(term, field_name, tensor) -> tensor`` to every tensor; returns a new object."""
        out = {}
        for term in TERMS:
            container = self.term(term)
            out[term.name] = term.parameters(
                **{f.name: fn(term, f.name, getattr(container, f.name)) for f in term.fields()}
            )
        return ForceFieldParameters(**out)

    def to(self, dtype: torch.dtype | None = None, device: Any = None) -> "ForceFieldParameters":
        """A copy with every tensor moved to ``dtype`` / ``device``."""
        return self.map(lambda term, name, x: x.to(dtype=dtype, device=device))

    def validate(self, counts: dict[str, int]) -> None:
        """Check shapes against ``counts`` (term name -> number of rows); raise ValueError."""
        for term in TERMS:
            container = self.term(term)
            for f in term.fields():
                x = getattr(container, f.name)
                expected = (counts[term.name],)
                if f.metadata["periodic"]:
                    expected += (len(term.periodicities),)
                if tuple(x.shape) != expected:
                    raise ValueError(
                        f"{term.name}.{f.name} has shape {tuple(x.shape)}, expected {expected}"
                    )
