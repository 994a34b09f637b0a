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
- urey_bradleys ``(i, j, k)`` (opt-in), the angle's atoms, ``j`` the vertex:
  ``0.5 k (r_ik - length)^2``, a harmonic bond between the angle's ends (CHARMM's
  1-3 term in OpenMM's convention).

Each term declares its functional *form* (``harmonic_bond``, ``harmonic_angle``,
``periodic_torsion``, ``nonbonded``): the energy, the System exporter and its XML
writer are written once per form and applied to every term of that form, through the
term's ``expansion`` (which atoms of each tuple, in which order, the force sees). A
term also declares how its tuples are enumerated from the bond graph (``tuples``).
Adding a term is its entry here, its head transform (:mod:`gnnff.nn.network`) and, for
the residue-template ffxml, its writer entry (:mod:`gnnff.openmm.templates`).

This module imports nothing from gnnff.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

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
    "UreyBradleyParameters",
    "Term",
    "BONDS",
    "ANGLES",
    "PROPERS",
    "IMPROPERS",
    "NONBONDED",
    "UREY_BRADLEYS",
    "TERMS",
    "REQUIRED_TERMS",
    "FORMS",
    "term_by_name",
    "unit_of",
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
class UreyBradleyParameters:
    """Urey-Bradley 1-3 distance terms, one row per angle. Every field has shape ``(n_angles,)``."""

    k: torch.Tensor = _param("kJ/mol/nm**2", "force constant")
    length: torch.Tensor = _param("nm", "equilibrium 1-3 distance")


#: Functional forms -> the parameter fields they read, in the argument order of the
#: OpenMM ``add*`` call after the atoms (``periodic_torsion`` adds the periodicity).
FORMS: dict[str, tuple[str, ...]] = {
    "harmonic_bond": ("length", "k"),
    "harmonic_angle": ("angle", "k"),
    "periodic_torsion": ("phase", "k"),
    "nonbonded": ("charge", "sigma", "epsilon"),
}

#: ``tuples(neighbours)``: every tuple of a term from the sorted neighbour lists of the
#: bond graph (``neighbours[i]`` the atoms bonded to ``i``, ascending).
Enumerator = Callable[[Sequence[Sequence[int]]], list]


def _bond_tuples(neighbours: Sequence[Sequence[int]]) -> list:
    """``(i, j)``, ``i < j``, sorted."""
    return [(i, j) for i, nbrs in enumerate(neighbours) for j in nbrs if j > i]


def _angle_tuples(neighbours: Sequence[Sequence[int]]) -> list:
    """``(i, j, k)``, ``j`` the vertex, ``i < k``."""
    return [(i, j, k) for j, nbrs in enumerate(neighbours)
            for a, i in enumerate(nbrs) for k in nbrs[a + 1:]]


def _proper_tuples(neighbours: Sequence[Sequence[int]]) -> list:
    """``(i, j, k, l)``, ``j < k``, one per distinct path (3-rings excluded)."""
    return [(i, j, k, l) for j, k in _bond_tuples(neighbours)
            for i in neighbours[j] if i != k
            for l in neighbours[k] if l != j and l != i]


def _improper_tuples(neighbours: Sequence[Sequence[int]]) -> list:
    """``(c, a, b, d)`` for every atom ``c`` with exactly three neighbours, ``a < b < d``."""
    return [(c, *nbrs) for c, nbrs in enumerate(neighbours) if len(nbrs) == 3]


def _atom_tuples(neighbours: Sequence[Sequence[int]]) -> list:
    return [(i,) for i in range(len(neighbours))]


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
    form
        Functional form (a key of :data:`FORMS`): the energy and exporter used.
    tuples
        Enumerator of the term's tuples from the bond graph (:data:`Enumerator`).
    optional
        Opt-in term: a parameter source may leave it out (``ForceFieldParameters``
        without it; no force is exported). Required terms are always present.
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
    form: str
    tuples: Enumerator
    optional: bool = False

    def fields(self) -> tuple[dataclasses.Field, ...]:
        """The parameter fields of this term, in declaration order."""
        return dataclasses.fields(self.parameters)

    def zeros(self, n: int, dtype: torch.dtype = torch.float64) -> Any:
        """A container of ``n`` rows of zeros: the term switched off (zero energy), for a
        source that does not provide it beside one that does."""
        width = (len(self.periodicities),)
        return self.parameters(**{f.name: torch.zeros((n, *width) if f.metadata["periodic"] else (n,), dtype=dtype)
                                  for f in self.fields()})


_TREFOIL = ((0, 1, 2, 3), (0, 2, 3, 1), (0, 3, 1, 2))

BONDS = Term("bonds", 2, "(i, j) bonded", BondParameters,
             ((0, 1), (1, 0)), ((0, 1),), (), "HarmonicBondForce", 0, "harmonic_bond", _bond_tuples)
ANGLES = Term("angles", 3, "(i, j, k), j the vertex", AngleParameters,
              ((0, 1, 2), (2, 1, 0)), ((0, 1, 2),), (), "HarmonicAngleForce", 1, "harmonic_angle",
              _angle_tuples)
PROPERS = Term("propers", 4, "(i, j, k, l), bonds i-j, j-k, k-l", ProperParameters,
               ((0, 1, 2, 3), (3, 2, 1, 0)), ((0, 1, 2, 3),), PROPER_PERIODICITIES,
               "PeriodicTorsionForce", 2, "periodic_torsion", _proper_tuples)
# Impropers: parameters invariant under every order of the outer atoms (the trefoil
# energy is, for phases 0 and pi); the energy expands each centre to the trefoil.
IMPROPERS = Term("impropers", 4, "(c, a, b, d), c the trivalent centre", ImproperParameters,
                 _TREFOIL + ((0, 1, 3, 2), (0, 3, 2, 1), (0, 2, 1, 3)), _TREFOIL,
                 IMPROPER_PERIODICITIES, "PeriodicTorsionForce", 3, "periodic_torsion", _improper_tuples)
NONBONDED = Term("nonbonded", 1, "(i,) every atom", NonbondedParameters,
                 ((0,),), ((0,),), (), "NonbondedForce", 4, "nonbonded", _atom_tuples)
# Urey-Bradley: the tuple is the whole angle (the head sees the vertex), the force the
# harmonic bond between its ends.
UREY_BRADLEYS = Term("urey_bradleys", 3, "(i, j, k) an angle, j the vertex; the bond i-k",
                     UreyBradleyParameters, ((0, 1, 2), (2, 1, 0)), ((0, 2),), (),
                     "HarmonicBondForce", 5, "harmonic_bond", _angle_tuples, optional=True)

#: All terms, in export order (optional terms last, so a System without them is the same
#: System whether or not this gnnff knows them).
TERMS: tuple[Term, ...] = (BONDS, ANGLES, PROPERS, IMPROPERS, NONBONDED, UREY_BRADLEYS)
#: The terms every parameter source provides.
REQUIRED_TERMS: tuple[Term, ...] = tuple(t for t in TERMS if not t.optional)


def term_by_name(name: str) -> Term:
    """The term called ``name``; an unknown name raises KeyError listing the known ones."""
    for term in TERMS:
        if term.name == name:
            return term
    raise KeyError(f"unknown term '{name}'; known: {', '.join(t.name for t in TERMS)}")


def unit_of(term: Term, name: str) -> str:
    """The unit of parameter ``name`` of ``term`` as declared here (``"kJ/mol/nm**2"``):
    the one place units are spelt; readers of other programs' parameters convert to it."""
    for f in term.fields():
        if f.name == name:
            return f.metadata["unit"]
    raise KeyError(f"{term.name} has no parameter '{name}'")


def parameter_fields(term: Term) -> Iterator[tuple[str, str]]:
    """Yield ``(parameter name, unit)`` for a term."""
    for f in term.fields():
        yield f.name, f.metadata["unit"]


class ForceFieldParameters:
    """Parameters of the terms of one molecule (or one batch of molecules).

    Built with one keyword per term (``bonds=BondParameters(...)``, ...): every term of
    :data:`REQUIRED_TERMS`, and optional terms when the source provides them. The
    containers are read as attributes (``parameters.bonds``) or with :meth:`term`. Rows
    follow the tuples of the matching ``Topology``. Immutable.
    """

    __slots__ = ("_containers",)

    def __init__(self, **containers: Any) -> None:
        known = {t.name: t for t in TERMS}
        unknown = sorted(set(containers) - set(known))
        if unknown:
            raise TypeError(f"unknown term(s) {unknown}; known: {', '.join(known)}")
        missing = [t.name for t in REQUIRED_TERMS if t.name not in containers]
        if missing:
            raise TypeError(f"parameters of required term(s) {missing} missing")
        for name, container in containers.items():
            if not isinstance(container, known[name].parameters):
                raise TypeError(f"{name}: expected {known[name].parameters.__name__}, "
                                f"got {type(container).__name__}")
        object.__setattr__(self, "_containers", {t.name: containers[t.name] for t in TERMS if t.name in containers})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._containers[name]
        except KeyError:
            if any(t.name == name for t in TERMS):
                raise AttributeError(f"these parameters have no '{name}' term (not provided by their source)") from None
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ForceFieldParameters is immutable; use replace()")

    def __getstate__(self) -> dict[str, Any]:
        return dict(self._containers)

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_containers", dict(state))

    def __repr__(self) -> str:
        return f"ForceFieldParameters({', '.join(self._containers)})"

    @property
    def terms(self) -> tuple[Term, ...]:
        """The terms present, in export order."""
        return tuple(t for t in TERMS if t.name in self._containers)

    def has(self, term: Term) -> bool:
        """Whether ``term``'s parameters are present."""
        return term.name in self._containers

    def term(self, term: Term) -> Any:
        """The parameter container of ``term`` (AttributeError when absent)."""
        return getattr(self, term.name)

    def replace(self, **containers: Any) -> "ForceFieldParameters":
        """A copy with some terms' containers replaced (or added)."""
        return ForceFieldParameters(**{**self._containers, **containers})

    def map(self, fn) -> "ForceFieldParameters":
        """Apply ``fn(term, field_name, tensor) -> tensor`` to every tensor; returns a new object."""
        out = {}
        for term in self.terms:
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
        for term in self.terms:
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
