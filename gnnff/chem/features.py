"""Atom features for the network, independent of the resonance form drawn in the input.

Formal charges and bond orders depend on which resonance structure a file happened
to draw (``C(=O)[O-]`` vs ``C([O-])=O``). Here they are averaged over the terminal
atoms that resonance makes equivalent: atoms with a single heavy neighbour, bonded to
the same centre, of the same element and hydrogen count (carboxylate, nitro,
phosphate and sulfonate oxygens, amidinium and guanidinium nitrogens). Every other
feature (element, degree, hydrogens, rings, aromaticity, conjugation) does not depend
on the drawing.

Feature set ``"v1"`` (gnnff-v1) also averages formal charges and non-aromatic bond
orders over the resonance structures RDKit enumerates, so a charge delocalised inside a
ring (an imidazolium drawn with the charge on either nitrogen, whatever its substituents)
or along a chain (amidinium, enolate, nitro) gives the same features however it is drawn.
Feature set ``"v0"`` (gnnff-industry-v0) averages terminal groups only.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem, rdBase

__all__ = ["ELEMENTS", "FEATURE_SETS", "N_FEATURES", "atom_features", "bonds_in_order", "conjugated_systems",
           "resonance_averaged", "structure_averaged", "terminal_groups"]

#: Feature set names (recorded in a network's config).
FEATURE_SETS = ("v0", "v1")
#: At most this many resonance structures are enumerated per conjugated system (feature set v1).
MAX_STRUCTURES = 64

#: Elements with their own one-hot column; others share the last one.
ELEMENTS = (1, 6, 7, 8, 9, 15, 16, 17, 35, 53, 3, 11, 19, 37, 55)
_DEGREES = 7  # 0..6
_HYDROGENS = 5  # 0..4
_RING_SIZES = (3, 4, 5, 6, 7, 8)
N_FEATURES = len(ELEMENTS) + 1 + _DEGREES + _DEGREES + _HYDROGENS + len(_RING_SIZES) + 5


def _one_hot(values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(values), n))
    out[np.arange(len(values)), np.clip(values, 0, n - 1)] = 1.0
    return out


def bonds_in_order(mol: Chem.Mol) -> list[Chem.Bond]:
    """``mol``'s bonds in index order, found atom by atom: RDKit's ``GetBonds()`` and
    ``GetBondWithIdx`` cost O(n) per bond (quadratic on a protein), each atom's own
    bonds do not."""
    found: dict[int, Chem.Bond] = {}
    for i in range(mol.GetNumAtoms()):
        for bond in mol.GetAtomWithIdx(i).GetBonds():
            found[bond.GetIdx()] = bond
    return [found[k] for k in range(len(found))]


def conjugated_systems(mol: Chem.Mol, bonds: list[Chem.Bond]) -> list[list[int]]:
    """Bond indices of each conjugated system: the connected components of the bonds
    RDKit marks conjugated."""
    parent = list(range(mol.GetNumAtoms()))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    conjugated = [b for b in bonds if b.GetIsConjugated()]
    for bond in conjugated:
        a, b = root(bond.GetBeginAtomIdx()), root(bond.GetEndAtomIdx())
        if a != b:
            parent[a] = b
    systems: dict[int, list[int]] = {}
    for bond in conjugated:
        systems.setdefault(root(bond.GetBeginAtomIdx()), []).append(bond.GetIdx())
    return list(systems.values())


def _system_atoms(bonds: list[Chem.Bond], system: list[int]) -> list[int]:
    """The atoms of a conjugated system (given as bond indices), sorted."""
    return sorted({i for k in system for i in (bonds[k].GetBeginAtomIdx(), bonds[k].GetEndAtomIdx())})


def _system_structures(mol: Chem.Mol, bonds: list[Chem.Bond], system: list[int], atoms: list[int], flags: int,
                       max_structures: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Resonance structures of one conjugated system (its bonds ``system``, its atoms
    ``atoms``), cut out of ``mol`` with every bond of its atoms (neighbours keep their
    element and charge; RDKit fills their other valences with implicit hydrogens): (the
    atoms' mean formal charges, the mean orders of the system's bonds), or None if RDKit
    rejects the fragment."""
    try:
        fragment, index = _cut_out(mol, atoms)
        inner = [fragment.GetBondBetweenAtoms(index[bonds[k].GetBeginAtomIdx()], index[bonds[k].GetEndAtomIdx()])
                 .GetIdx() for k in system]
        with rdBase.BlockLogs():
            structures = [x for x in Chem.ResonanceMolSupplier(fragment, flags, maxStructs=max_structures)
                          if x is not None]
    except Exception:  # RDKit raises several sanitization exception types
        return None
    if not structures:
        return None
    charges = np.mean([[x.GetAtomWithIdx(index[i]).GetFormalCharge() for i in atoms] for x in structures], axis=0)
    orders = np.mean([[x.GetBondWithIdx(k).GetBondTypeAsDouble() for k in inner] for x in structures], axis=0)
    return charges, orders


def _cut_out(mol: Chem.Mol, atoms: list[int]) -> tuple[Chem.Mol, dict[int, int]]:
    """A sanitized copy of ``atoms`` with all their bonds and the neighbours those reach
    (what ``Chem.PathToSubmol`` makes of these bonds, without its cost that grows with the
    whole molecule), and the map from ``mol``'s atom indices to the copy's."""
    fragment = Chem.RWMol()
    index: dict[int, int] = {}

    inside = set(atoms)

    def add(i: int) -> int:
        if i not in index:
            atom = Chem.Atom(mol.GetAtomWithIdx(i))
            if i not in inside:  # a neighbour cut from its own ring is no longer aromatic
                atom.SetIsAromatic(False)
            index[i] = fragment.AddAtom(atom)
        return index[i]

    seen: set[int] = set()
    for i in atoms:
        for bond in mol.GetAtomWithIdx(i).GetBonds():
            if bond.GetIdx() in seen:
                continue
            seen.add(bond.GetIdx())
            a, b = add(bond.GetBeginAtomIdx()), add(bond.GetEndAtomIdx())
            fragment.AddBond(a, b, bond.GetBondType())
            fragment.GetBondBetweenAtoms(a, b).SetIsAromatic(bond.GetIsAromatic())
    out = fragment.GetMol()
    with rdBase.BlockLogs():
        Chem.SanitizeMol(out)
    return out, index


def structure_averaged(mol: Chem.Mol, *, kekule_all: bool = False,
                       max_structures: int = MAX_STRUCTURES) -> tuple[np.ndarray, np.ndarray]:
    """Formal charges ``(n_atoms,)`` and bond orders ``(n_bonds,)`` averaged over the
    resonance structures RDKit enumerates (all Kekulé forms too when ``kekule_all``), one
    conjugated system at a time (at most ``max_structures`` each).

    System by system, the average does not depend on how many other systems the molecule
    has (one RDKit enumeration over the whole molecule stops at ``max_structures``
    combinations), and the cost grows with the molecule's size, not faster (RDKit's
    whole-molecule perception took 150 s for a 4,900-atom peptide). Atoms and bonds outside
    every system keep their values. Without ``kekule_all`` aromatic bonds keep 1.5: which
    single Kekulé form RDKit picks depends on the atom order, their average over all forms
    does not.
    """
    charges = np.array([mol.GetAtomWithIdx(i).GetFormalCharge() for i in range(mol.GetNumAtoms())], dtype=float)
    bonds = bonds_in_order(mol)
    orders = np.array([b.GetBondTypeAsDouble() for b in bonds], dtype=float)
    averaged_charges, averaged_orders = charges.copy(), orders.copy()
    flags = Chem.KEKULE_ALL if kekule_all else 0
    for system in conjugated_systems(mol, bonds):
        atoms = _system_atoms(bonds, system)
        if not kekule_all and not charges[atoms].any():
            # Without formal charges and without charge separation (not allowed), RDKit's
            # only structure is the one Kekulé form it keeps: nothing to average (the same
            # values as enumerating, on all of 1,500 label molecules; 2.3 -> 0.5 ms each)
            continue
        result = _system_structures(mol, bonds, system, atoms, flags, max_structures)
        if result is not None:
            system_charges, system_orders = result
            averaged_charges[atoms] = system_charges
            averaged_orders[system] = system_orders
    if kekule_all:
        return averaged_charges, averaged_orders
    aromatic = np.array([b.GetIsAromatic() for b in bonds], dtype=bool)
    return averaged_charges, np.where(aromatic, orders, averaged_orders)


def resonance_averaged(mol: Chem.Mol, *, structures: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Formal charges ``(n_atoms,)`` and bond orders per atom pair, averaged over
    resonance-equivalent terminal atoms (and over resonance structures with ``structures``).

    Returns
    -------
    charges
        Averaged formal charge per atom.
    valence
        Sum of averaged bond orders of each atom (aromatic bonds count 1.5).
    """
    n = mol.GetNumAtoms()
    atoms = [mol.GetAtomWithIdx(i) for i in range(n)]
    bonds = bonds_in_order(mol)
    if structures:
        charges, orders = structure_averaged(mol)
    else:
        charges = np.array([a.GetFormalCharge() for a in atoms], dtype=float)
        orders = np.array([b.GetBondTypeAsDouble() for b in bonds], dtype=float)
    valence = np.zeros(n)
    for bond, order in zip(bonds, orders):
        valence[bond.GetBeginAtomIdx()] += order
        valence[bond.GetEndAtomIdx()] += order
    for atom in atoms:
        for bonds in terminal_groups(atom):
            idx = [b.GetOtherAtomIdx(atom.GetIdx()) for b in bonds]
            group_orders = orders[[b.GetIdx() for b in bonds]]
            charges[idx] = charges[idx].mean()
            mean_order = float(np.mean(group_orders))
            for i, order in zip(idx, group_orders):  # terminal atoms: their only heavy bond is this one
                valence[i] += mean_order - order
    return charges, valence


def terminal_groups(atom: Chem.Atom) -> list[list[Chem.Bond]]:
    """The bonds from ``atom`` to terminal heavy neighbours (one heavy neighbour each),
    grouped by the neighbour's element and hydrogen count; only groups of two or more,
    the atoms resonance makes equivalent (carboxylate, nitro, phosphate, sulfonate
    oxygens; amidinium, guanidinium nitrogens)."""
    groups: dict[tuple[int, int], list[Chem.Bond]] = {}
    for bond in atom.GetBonds():
        other = bond.GetOtherAtom(atom)
        hydrogens = other.GetTotalNumHs(includeNeighbors=True)
        if other.GetAtomicNum() > 1 and other.GetDegree() - hydrogens == 1:
            groups.setdefault((other.GetAtomicNum(), hydrogens), []).append(bond)
    return [bonds for bonds in groups.values() if len(bonds) > 1]


def atom_features(mol: Chem.Mol, version: str = "v0") -> np.ndarray:
    """Feature matrix ``(n_atoms, N_FEATURES)`` of a prepared molecule (feature set ``version``)."""
    if version not in FEATURE_SETS:
        raise ValueError(f"unknown feature set '{version}'; known: {', '.join(FEATURE_SETS)}")
    n = mol.GetNumAtoms()
    atoms = [mol.GetAtomWithIdx(i) for i in range(n)]
    z = np.array([a.GetAtomicNum() for a in atoms])
    element = np.array([ELEMENTS.index(x) if x in ELEMENTS else len(ELEMENTS) for x in z])
    degree = np.array([a.GetDegree() for a in atoms])
    heavy_degree = np.array([a.GetDegree() - a.GetTotalNumHs(includeNeighbors=True) for a in atoms])
    hydrogens = np.array([a.GetTotalNumHs(includeNeighbors=True) for a in atoms])
    ring_info = mol.GetRingInfo()
    rings = np.array([[ring_info.IsAtomInRingOfSize(i, s) for s in _RING_SIZES] for i in range(n)],
                     dtype=float).reshape(n, len(_RING_SIZES))
    charges, valence = resonance_averaged(mol, structures=version == "v1")
    conjugated = np.zeros(n)
    for atom in atoms:
        if any(b.GetIsConjugated() for b in atom.GetBonds()):
            conjugated[atom.GetIdx()] = 1.0
    scalars = np.stack([
        np.array([a.GetIsAromatic() for a in atoms], dtype=float),
        np.array([a.IsInRing() for a in atoms], dtype=float),
        conjugated,
        charges,
        valence / 4.0,
    ], axis=1)
    return np.concatenate([
        _one_hot(element, len(ELEMENTS) + 1),
        _one_hot(degree, _DEGREES),
        _one_hot(heavy_degree, _DEGREES),
        _one_hot(hydrogens, _HYDROGENS),
        rings,
        scalars,
    ], axis=1)
