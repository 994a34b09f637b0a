"""Topology: atoms, their chemical features, and every MM term's atom tuples.

Built from a prepared RDKit molecule (see :mod:`gnnff.chem.molecule`) with neighbour
lists only, so time and memory grow linearly with the number of atoms (no dense
adjacency matrices or their powers). Tuple conventions follow :mod:`gnnff.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from rdkit import Chem

from gnnff.schema import ANGLES, BONDS, PROPERS, TERMS, Term

__all__ = ["Topology", "atom_budget_chunks", "build_topology"]

_HYBRIDIZATION = {
    Chem.HybridizationType.S: 0,
    Chem.HybridizationType.SP: 1,
    Chem.HybridizationType.SP2: 2,
    Chem.HybridizationType.SP3: 3,
    Chem.HybridizationType.SP3D: 4,
    Chem.HybridizationType.SP3D2: 5,
}


def _as_array(rows: Sequence[Sequence[int]], width: int) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).reshape(-1, width)


@dataclass(frozen=True, eq=False)
class Topology:
    """Atoms and MM term tuples of one molecule, or of a batch of molecules.

    Integer arrays are ``int64`` numpy arrays; atom indices are 0-based into the
    atoms of this topology.

    Attributes
    ----------
    name
        Molecule name (names joined by ``+`` for a batch).
    atomic_numbers
        ``(n_atoms,)``
    formal_charges
        ``(n_atoms,)``
    is_aromatic, in_ring
        ``(n_atoms,)`` booleans (RDKit aromaticity model).
    hybridization
        ``(n_atoms,)`` 0 s, 1 sp, 2 sp2, 3 sp3, 4 sp3d, 5 sp3d2, -1 other.
    bond_orders
        ``(n_bonds,)`` RDKit bond order as float (1.5 aromatic).
    tuples
        Term name -> ``(n, term.arity)`` atom tuples, for every term of
        :data:`gnnff.schema.TERMS` with more than one atom (enumerated by the term's own
        ``tuples`` rule); also read as attributes: ``topology.bonds``, ``topology.angles``,
        ``topology.propers``, ``topology.impropers``, ``topology.urey_bradleys``.
    pairs_14
        ``(n, 2)`` atom pairs (i < j) three bonds apart and not closer.
    exclusions
        ``(n, 2)`` atom pairs (i < j) one or two bonds apart.
    molecule_index
        ``(n_atoms,)`` which molecule of a batch each atom belongs to.
    net_charges
        ``(n_molecules,)`` net charge of each molecule (sum of formal charges).
    """

    name: str
    atomic_numbers: np.ndarray
    formal_charges: np.ndarray
    is_aromatic: np.ndarray
    in_ring: np.ndarray
    hybridization: np.ndarray
    bond_orders: np.ndarray
    tuples: dict[str, np.ndarray]
    pairs_14: np.ndarray
    exclusions: np.ndarray
    molecule_index: np.ndarray = field(default=None)  # type: ignore[assignment]
    net_charges: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.molecule_index is None:
            object.__setattr__(self, "molecule_index", np.zeros(self.n_atoms, dtype=np.int64))
        if self.net_charges is None:
            object.__setattr__(
                self, "net_charges", np.array([int(self.formal_charges.sum())], dtype=np.int64)
            )

    def __getattr__(self, name: str) -> np.ndarray:
        # term tuples as attributes; only called when normal lookup fails
        if name.startswith("_") or name == "tuples":
            raise AttributeError(name)
        try:
            return self.tuples[name]
        except KeyError:
            raise AttributeError(f"Topology has no attribute or term '{name}'") from None

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def n_molecules(self) -> int:
        return int(self.net_charges.shape[0])

    @property
    def net_charge(self) -> int:
        """Net charge of the whole topology (sum of formal charges)."""
        return int(self.net_charges.sum())

    @property
    def atoms(self) -> np.ndarray:
        """``(n_atoms, 1)`` tuples of the per-atom (nonbonded) term."""
        return np.arange(self.n_atoms, dtype=np.int64)[:, None]

    def indices(self, term: Term) -> np.ndarray:
        """Atom tuples of ``term``, shape ``(n, term.arity)``."""
        return self.atoms if term.arity == 1 else self.tuples[term.name]

    def counts(self) -> dict[str, int]:
        """Number of rows of every term."""
        return {term.name: int(self.indices(term).shape[0]) for term in TERMS}

    @staticmethod
    def batch(topologies: Sequence["Topology"]) -> "Topology":
        """Disjoint union of several topologies, atom indices offset, molecules numbered."""
        offsets = np.cumsum([0] + [t.n_atoms for t in topologies])[:-1]
        mol_offsets = np.cumsum([0] + [t.n_molecules for t in topologies])[:-1]

        def cat(attr: str, shift: Sequence[int] | None = None) -> np.ndarray:
            arrays = [getattr(t, attr) for t in topologies]
            if shift is not None:
                arrays = [a + s for a, s in zip(arrays, shift)]
            return np.concatenate(arrays, axis=0)

        # terms that share one tuple array (Urey-Bradley and angles) share its batch too
        joined: dict[int, np.ndarray] = {}
        tuples = {}
        for name, first in topologies[0].tuples.items():
            if id(first) not in joined:
                joined[id(first)] = np.concatenate([t.tuples[name] + s for t, s in zip(topologies, offsets)], axis=0)
            tuples[name] = joined[id(first)]
        return Topology(
            name="+".join(t.name for t in topologies),
            atomic_numbers=cat("atomic_numbers"),
            formal_charges=cat("formal_charges"),
            is_aromatic=cat("is_aromatic"),
            in_ring=cat("in_ring"),
            hybridization=cat("hybridization"),
            bond_orders=cat("bond_orders"),
            tuples=tuples,
            pairs_14=cat("pairs_14", offsets),
            exclusions=cat("exclusions", offsets),
            molecule_index=cat("molecule_index", mol_offsets),
            net_charges=cat("net_charges"),
        )


def atom_budget_chunks(sizes: Sequence[int], budget: int) -> list[slice]:
    """Consecutive slices of items of ``sizes`` atoms, each as long as fits in ``budget`` atoms
    (at least one item, so an item larger than the budget is a chunk of its own)."""
    out, start = [], 0
    while start < len(sizes):
        stop, atoms = start + 1, sizes[start]
        while stop < len(sizes) and atoms + sizes[stop] <= budget:
            atoms += sizes[stop]
            stop += 1
        out.append(slice(start, stop))
        start = stop
    return out


def _unique_pairs(pairs: np.ndarray, n_atoms: int) -> np.ndarray:
    """Sorted unique (i < j) pairs of an ``(n, 2)`` array."""
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    lo = np.minimum(pairs[:, 0], pairs[:, 1])
    hi = np.maximum(pairs[:, 0], pairs[:, 1])
    keys = np.unique(lo * n_atoms + hi)
    return np.stack([keys // n_atoms, keys % n_atoms], axis=1)


def build_topology(mol: Chem.Mol) -> Topology:
    """Enumerate every MM term of a prepared RDKit molecule.

    Parameters
    ----------
    mol
        A molecule returned by :func:`gnnff.chem.molecule.prepare` (explicit hydrogens).

    Returns
    -------
    Topology
        The tuples of every term of :data:`gnnff.schema.TERMS`, each enumerated by its
        ``tuples`` rule from the neighbour lists: bonds ``(i, j)`` with ``i < j``; angles
        ``(i, j, k)`` with ``i < k``; propers ``(i, j, k, l)`` with ``j < k``, one per
        distinct path (3-rings excluded); impropers ``(c, a, b, d)`` for every atom with
        exactly three neighbours, ``a < b < d``; Urey-Bradley pairs as the angles.
    """
    n = mol.GetNumAtoms()
    # RDKit's mol.GetBonds() and GetBondWithIdx() cost O(n) per bond in recent versions;
    # atom-by-atom index access and each atom's own bonds keep this linear.
    atoms = [mol.GetAtomWithIdx(i) for i in range(n)]
    by_pair = {(atom.GetIdx(), b.GetOtherAtomIdx(atom.GetIdx())): b.GetBondTypeAsDouble()
               for atom in atoms for b in atom.GetBonds() if b.GetOtherAtomIdx(atom.GetIdx()) > atom.GetIdx()}
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for i, j in by_pair:
        neighbours[i].append(j)
        neighbours[j].append(i)
    for nbrs in neighbours:
        nbrs.sort()

    # one enumeration per rule: terms with the same rule (angles, Urey-Bradley) share the array
    enumerated: dict = {}
    for term in TERMS:
        if term.arity > 1 and term.tuples not in enumerated:
            enumerated[term.tuples] = _as_array(term.tuples(neighbours), term.arity)
    tuples = {term.name: enumerated[term.tuples] for term in TERMS if term.arity > 1}
    bonds = tuples[BONDS.name]
    bond_orders = np.array([by_pair[pair] for pair in map(tuple, bonds.tolist())], dtype=np.float64)

    # nonbonded exclusions (1-2, 1-3) and scaled 1-4 pairs by graph distance
    exclusions = _unique_pairs(np.concatenate([bonds, tuples[ANGLES.name][:, [0, 2]]]), n)
    ends = _unique_pairs(tuples[PROPERS.name][:, [0, 3]], n)
    if len(ends) and len(exclusions):
        excluded = np.isin(ends[:, 0] * n + ends[:, 1], exclusions[:, 0] * n + exclusions[:, 1])
        ends = ends[~excluded]

    return Topology(
        name=mol.GetProp("_Name") if mol.HasProp("_Name") else "",
        atomic_numbers=np.array([a.GetAtomicNum() for a in atoms], dtype=np.int64),
        formal_charges=np.array([a.GetFormalCharge() for a in atoms], dtype=np.int64),
        is_aromatic=np.array([a.GetIsAromatic() for a in atoms], dtype=bool),
        in_ring=np.array([a.IsInRing() for a in atoms], dtype=bool),
        hybridization=np.array([_HYBRIDIZATION.get(a.GetHybridization(), -1) for a in atoms],
                               dtype=np.int64),
        bond_orders=bond_orders,
        tuples=tuples,
        pairs_14=ends,
        exclusions=exclusions,
    )
