"""Atom features for the network, independent of the resonance form drawn in the input.

Formal charges and bond orders depend on which resonance structure a file happened
to draw (``C(=O)[O-]`` vs ``C([O-])=O``). Here they are averaged over the terminal
atoms that resonance makes equivalent: atoms with a single heavy neighbour, bonded to
the same centre, of the same element and hydrogen count (carboxylate, nitro,
phosphate and sulfonate oxygens, amidinium and guanidinium nitrogens). Every other
feature (element, degree, hydrogens, rings, aromaticity, conjugation) does not depend
on the drawing.

Feature set ``"v1"`` (gnnff-v1) also averages formal charges and non-aromatic bond
orders over the resonance structures RDKit enumerates (those with the fewest formal
charges), so a charge delocalised inside a ring (an imidazolium drawn with the charge on
either nitrogen, whatever its substituents) or along a chain (amidinium, enolate, nitro)
gives the same features however it is drawn.
Feature set ``"v0"`` (gnnff-industry-v0) averages terminal groups only.
"""

from __future__ import annotations

import hashlib

import numpy as np
from rdkit import Chem, rdBase

__all__ = ["ELEMENTS", "FEATURE_SETS", "N_FEATURES", "atom_features", "bond_components", "bonds_in_order",
           "conjugated_systems", "feature_fingerprint", "resonance_averaged", "structure_averaged",
           "terminal_groups"]

#: Feature set names (recorded in a network's config).
FEATURE_SETS = ("v0", "v1")
#: At most this many resonance structures are enumerated per conjugated system (feature set v1).
MAX_STRUCTURES = 64
#: RDKit's enumeration of one conjugated system is stopped after this many of its progress
#: steps (a count, so the features do not depend on the machine's speed), and the system
#: keeps its drawn charges and bond orders. Over 3,677 SPICE PubChem molecules and
#: dipeptides the 99th percentile was 301 steps and two needed more: 3,639 steps (0.33 s)
#: and a triazido-trinitrobenzene that ran 78 s; stopped here, at most about 1.5 s.
MAX_ENUMERATION_STEPS = 1000

#: Elements with their own one-hot column; others share the last one.
ELEMENTS = (1, 6, 7, 8, 9, 15, 16, 17, 35, 53, 3, 11, 19, 37, 55)
_DEGREES = 7  # 0..6
_HYDROGENS = 5  # 0..4
_RING_SIZES = (3, 4, 5, 6, 7, 8)
N_FEATURES = len(ELEMENTS) + 1 + _DEGREES + _DEGREES + _HYDROGENS + len(_RING_SIZES) + 5
#: Atomic number -> its one-hot column (elements not in ELEMENTS: the last column).
_ELEMENT_COLUMN = np.full(119, len(ELEMENTS), dtype=np.int64)
_ELEMENT_COLUMN[list(ELEMENTS)] = np.arange(len(ELEMENTS))
_RING_COLUMN = {size: k for k, size in enumerate(_RING_SIZES)}
#: Molecules whose features fingerprint the feature code (:func:`feature_fingerprint`): terminal
#: groups, ring and chain resonance, push-pull and zwitterionic drawings, an azide, ions.
_PROBES = ("CC(=O)[O-]", "C[N+](=O)[O-]", "Cc1c[n+](C)c[nH]1", "Nc1ccc([N+](=O)[O-])cc1",
           "[N-]=[N+]=Nc1ccccc1", "C[n+]1ccccc1[O-]", "NC(=[NH2+])N", "OP(=O)([O-])[O-]", "CS(=O)(=O)N",
           "O=C1C=CC(=O)C=C1", "C#N", "[Na+]", "[Cl-]")


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


def bond_components(n_atoms: int, bonds: list[Chem.Bond]) -> list[list[Chem.Bond]]:
    """``bonds`` grouped by the connected components they form over ``n_atoms`` atoms
    (union-find; each group in the order of ``bonds``)."""
    parent = list(range(n_atoms))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for bond in bonds:
        a, b = root(bond.GetBeginAtomIdx()), root(bond.GetEndAtomIdx())
        if a != b:
            parent[a] = b
    groups: dict[int, list[Chem.Bond]] = {}
    for bond in bonds:
        groups.setdefault(root(bond.GetBeginAtomIdx()), []).append(bond)
    return list(groups.values())


def conjugated_systems(mol: Chem.Mol, bonds: list[Chem.Bond]) -> list[list[int]]:
    """Bond indices of each conjugated system: the connected components of the bonds
    RDKit marks conjugated."""
    conjugated = [b for b in bonds if b.GetIsConjugated()]
    return [[b.GetIdx() for b in group] for group in bond_components(mol.GetNumAtoms(), conjugated)]


def _system_atoms(bonds: list[Chem.Bond], system: list[int]) -> list[int]:
    """The atoms of a conjugated system (given as bond indices), sorted."""
    return sorted({i for k in system for i in (bonds[k].GetBeginAtomIdx(), bonds[k].GetEndAtomIdx())})


def _system_structures(mol: Chem.Mol, bonds: list[Chem.Bond], system: list[int], atoms: list[int], flags: int,
                       max_structures: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Resonance structures of one conjugated system (its bonds ``system``, its atoms
    ``atoms``), cut out of ``mol`` with every bond of its atoms (neighbours keep their
    element and charge; RDKit fills their other valences with implicit hydrogens): (the
    atoms' mean formal charges, the mean orders of the system's bonds) over the structures
    with the smallest sum of absolute formal charges, or None if RDKit rejects the fragment."""
    try:
        fragment, index = _cut_out(mol, atoms)
        inner = [fragment.GetBondBetweenAtoms(index[bonds[k].GetBeginAtomIdx()], index[bonds[k].GetEndAtomIdx()])
                 .GetIdx() for k in system]
        supplier = Chem.ResonanceMolSupplier(fragment, flags, maxStructs=max_structures)
        budget = _StepBudget(MAX_ENUMERATION_STEPS)
        supplier.SetProgressCallback(budget)
        with rdBase.BlockLogs():
            structures = [x for x in supplier if x is not None]
        if supplier.WasCanceled():
            return None
    except Exception:  # RDKit raises several sanitization exception types
        return None
    if not structures:
        return None
    # RDKit also yields structures with more charge separation than the drawn one (push-pull
    # forms of nitroanilines, a doubly charged nitrogen in an aminophenyl azide); an unweighted
    # average counts them as much as the main ones, so only the fewest-charge structures count
    formal = np.array([[x.GetAtomWithIdx(index[i]).GetFormalCharge() for i in atoms] for x in structures], dtype=float)
    separation = np.abs(formal).sum(axis=1)
    fewest = np.flatnonzero(separation == separation.min())
    orders = np.mean([[structures[s].GetBondWithIdx(k).GetBondTypeAsDouble() for k in inner] for s in fewest], axis=0)
    return formal[fewest].mean(axis=0), orders


class _StepBudget(Chem.ResonanceMolSupplierCallback):
    """Progress callback of RDKit's resonance enumeration: stops it after ``steps`` calls."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.left = steps

    def __call__(self) -> bool:
        self.left -= 1
        return self.left > 0


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
    resonance structures RDKit enumerates with the fewest formal charges (all Kekulé forms
    too when ``kekule_all``), one conjugated system at a time (at most ``max_structures``
    each).

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
    return _resonance_averaged(_Graph(mol), structures)


class _Graph:
    """A prepared molecule's atoms, bonds and the per-atom numbers the features share,
    read from RDKit once."""

    def __init__(self, mol: Chem.Mol) -> None:
        self.mol = mol
        n = mol.GetNumAtoms()
        self.atoms = [mol.GetAtomWithIdx(i) for i in range(n)]
        self.bonds = bonds_in_order(mol)
        self.z = np.fromiter((a.GetAtomicNum() for a in self.atoms), dtype=np.int64, count=n)
        self.degree = np.fromiter((a.GetDegree() for a in self.atoms), dtype=np.int64, count=n)
        self.hydrogens = np.fromiter((a.GetTotalNumHs(includeNeighbors=True) for a in self.atoms),
                                     dtype=np.int64, count=n)
        ends = np.fromiter((i for b in self.bonds for i in (b.GetBeginAtomIdx(), b.GetEndAtomIdx())),
                           dtype=np.int64, count=2 * len(self.bonds))
        self.ends = ends.reshape(-1, 2)


def _resonance_averaged(graph: _Graph, structures: bool) -> tuple[np.ndarray, np.ndarray]:
    n, bonds = len(graph.atoms), graph.bonds
    if structures:
        charges, orders = structure_averaged(graph.mol)
    else:
        charges = np.fromiter((a.GetFormalCharge() for a in graph.atoms), dtype=float, count=n)
        orders = np.fromiter((b.GetBondTypeAsDouble() for b in bonds), dtype=float, count=len(bonds))
    valence = np.zeros(n)
    np.add.at(valence, graph.ends.ravel(), np.repeat(orders, 2))  # bond by bond, as a loop would add
    # terminal heavy atoms (one heavy neighbour); only atoms bonded to two or more of them
    # can hold a group (terminal_groups), and those are few
    terminal = (graph.z > 1) & (graph.degree - graph.hydrogens == 1)
    begin, end = graph.ends[:, 0], graph.ends[:, 1]
    centres = np.bincount(np.concatenate([begin[terminal[end]], end[terminal[begin]]]), minlength=n) >= 2
    for i in np.flatnonzero(centres).tolist():
        atom = graph.atoms[i]
        for group in _terminal_groups(atom, graph.hydrogens):
            idx = [b.GetOtherAtomIdx(i) for b in group]
            group_orders = orders[[b.GetIdx() for b in group]]
            charges[idx] = charges[idx].mean()
            mean_order = float(np.mean(group_orders))
            for j, order in zip(idx, group_orders):  # terminal atoms: their only heavy bond is this one
                valence[j] += mean_order - order
    return charges, valence


def terminal_groups(atom: Chem.Atom) -> list[list[Chem.Bond]]:
    """The bonds from ``atom`` to terminal heavy neighbours (one heavy neighbour each),
    grouped by the neighbour's element and hydrogen count; only groups of two or more,
    the atoms resonance makes equivalent (carboxylate, nitro, phosphate, sulfonate
    oxygens; amidinium, guanidinium nitrogens)."""
    return _terminal_groups(atom, None)


def _terminal_groups(atom: Chem.Atom, hydrogens: np.ndarray | None) -> list[list[Chem.Bond]]:
    """:func:`terminal_groups`, with the molecule's hydrogen counts per atom when known."""
    groups: dict[tuple[int, int], list[Chem.Bond]] = {}
    for bond in atom.GetBonds():
        other = bond.GetOtherAtom(atom)
        h = other.GetTotalNumHs(includeNeighbors=True) if hydrogens is None else int(hydrogens[other.GetIdx()])
        if other.GetAtomicNum() > 1 and other.GetDegree() - h == 1:
            groups.setdefault((other.GetAtomicNum(), h), []).append(bond)
    return [bonds for bonds in groups.values() if len(bonds) > 1]


def atom_features(mol: Chem.Mol, version: str = "v0") -> np.ndarray:
    """Feature matrix ``(n_atoms, N_FEATURES)`` of a prepared molecule (feature set ``version``)."""
    if version not in FEATURE_SETS:
        raise ValueError(f"unknown feature set '{version}'; known: {', '.join(FEATURE_SETS)}")
    graph = _Graph(mol)
    n, atoms = len(graph.atoms), graph.atoms
    element = _ELEMENT_COLUMN[np.minimum(graph.z, len(_ELEMENT_COLUMN) - 1)]
    degree, hydrogens = graph.degree, graph.hydrogens
    heavy_degree = degree - hydrogens
    rings = np.zeros((n, len(_RING_SIZES)))
    for ring in mol.GetRingInfo().AtomRings():  # an atom is in a ring of size s if one of its rings has it
        if len(ring) in _RING_COLUMN:
            rings[list(ring), _RING_COLUMN[len(ring)]] = 1.0
    charges, valence = _resonance_averaged(graph, version == "v1")
    conjugated = np.zeros(n)
    conjugated[graph.ends[np.fromiter((b.GetIsConjugated() for b in graph.bonds), dtype=bool,
                                        count=len(graph.bonds))].ravel()] = 1.0
    scalars = np.stack([
        np.fromiter((a.GetIsAromatic() for a in atoms), dtype=float, count=n),
        np.fromiter((a.IsInRing() for a in atoms), dtype=float, count=n),
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


def feature_fingerprint(version: str) -> str:
    """A short hash of feature set ``version`` on fixed probe molecules. It changes when the
    feature code does, so a stored network trained on other features is not silently reused."""
    digest = hashlib.sha256(version.encode())
    for smiles in _PROBES:
        features = atom_features(Chem.AddHs(Chem.MolFromSmiles(smiles)), version)
        digest.update(np.round(features, 6).astype("<f8").tobytes())
    return digest.hexdigest()[:16]
