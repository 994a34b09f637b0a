"""Topology enumeration against an independent brute-force reference."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from rdkit import Chem

import gnnff
from gnnff.chem.topology import build_topology


def _graph_distances(mol: Chem.Mol, cutoff: int = 3) -> dict[tuple[int, int], int]:
    """Shortest bond-path length of every pair (i < j) up to ``cutoff``, by BFS."""
    neighbours = [[n.GetIdx() for n in a.GetNeighbors()] for a in mol.GetAtoms()]
    out = {}
    for start in range(mol.GetNumAtoms()):
        seen = {start: 0}
        queue = deque([start])
        while queue:
            atom = queue.popleft()
            if seen[atom] == cutoff:
                continue
            for n in neighbours[atom]:
                if n not in seen:
                    seen[n] = seen[atom] + 1
                    queue.append(n)
        out.update({(start, j): d for j, d in seen.items() if j > start})
    return out


def _paths(mol: Chem.Mol, length: int) -> set[tuple[int, ...]]:
    """All simple bond paths with ``length`` atoms, each once (canonical direction)."""
    neighbours = [[n.GetIdx() for n in a.GetNeighbors()] for a in mol.GetAtoms()]
    paths = [(i,) for i in range(mol.GetNumAtoms())]
    for _ in range(length - 1):
        paths = [p + (n,) for p in paths for n in neighbours[p[-1]] if n not in p]
    return {min(p, p[::-1]) for p in paths}


def _check_against_reference(mol: Chem.Mol) -> None:
    top = build_topology(mol)
    dist = _graph_distances(mol)
    assert {tuple(b) for b in top.bonds.tolist()} == {p for p, d in dist.items() if d == 1}
    assert {tuple(e) for e in top.exclusions.tolist()} == {p for p, d in dist.items() if d in (1, 2)}
    assert {tuple(e) for e in top.pairs_14.tolist()} == {p for p, d in dist.items() if d == 3}
    assert {min(t, t[::-1]) for t in map(tuple, top.angles.tolist())} == _paths(mol, 3)
    assert {min(t, t[::-1]) for t in map(tuple, top.propers.tolist())} == _paths(mol, 4)
    assert len(top.angles) == len(_paths(mol, 3)) and len(top.propers) == len(_paths(mol, 4))
    centres = [a.GetIdx() for a in mol.GetAtoms() if a.GetDegree() == 3]
    assert top.impropers[:, 0].tolist() == centres
    for c, *outer in top.impropers.tolist():
        assert sorted(outer) == outer == sorted(n.GetIdx() for n in mol.GetAtomWithIdx(c).GetNeighbors())
    assert top.net_charge == Chem.GetFormalCharge(mol)


@pytest.mark.parametrize("smiles", [
    "[Na+]", "[Cl-]", "Cl", "[H][H]", "O", "C#C", "CC", "C1CC1", "C1CCC1", "C1CCCC1", "c1ccccc1",
    "C1CCCCCC1", "C1CCCCCCC1", "C1CCCCCCCCCCC1", "C12CC1C2", "C1CC2CCC1C2", "c1ccc2ccccc2c1",
    "CC(=O)Oc1ccccc1C(=O)O", "[NH3+]CC(=O)[O-]", "C12C3C4C1C5C2C3C45",
])
def test_topology_matches_brute_force(smiles):
    _check_against_reference(gnnff.load_molecule(smiles))


def test_lone_ion_and_diatomics():
    na = build_topology(gnnff.load_molecule("[Na+]"))
    assert na.n_atoms == 1 and na.net_charge == 1
    assert all(n == 0 for name, n in na.counts().items() if name != "nonbonded")
    hcl = build_topology(gnnff.load_molecule("Cl"))
    assert hcl.n_atoms == 2 and hcl.counts()["bonds"] == 1 and len(hcl.exclusions) == 1
    h2 = build_topology(gnnff.load_molecule("[H][H]"))
    assert h2.bonds.tolist() == [[0, 1]] and len(h2.angles) == 0


def test_5000_atom_peptide():
    sequence = "ACDEFGHIKLMNPQRSTVWY" * 16
    mol = gnnff.load_molecule(Chem.AddHs(Chem.MolFromSequence(sequence)))
    assert mol.GetNumAtoms() > 5000
    _check_against_reference(mol)


def test_topology_inputs_not_modified():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    before = Chem.MolToMolBlock(mol)
    build_topology(gnnff.load_molecule(mol))
    assert Chem.MolToMolBlock(mol) == before


def test_batch_offsets_indices():
    a = build_topology(gnnff.load_molecule("CCO"))
    b = build_topology(gnnff.load_molecule("c1ccccc1"))
    batch = gnnff.Topology.batch([a, b])
    assert batch.n_atoms == a.n_atoms + b.n_atoms and batch.n_molecules == 2
    assert np.array_equal(batch.propers[len(a.propers):], b.propers + a.n_atoms)
    assert batch.molecule_index.tolist() == [0] * a.n_atoms + [1] * b.n_atoms
