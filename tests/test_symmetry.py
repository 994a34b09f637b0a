"""Atom relabelling, rigid motions and neighbour order leave the physics unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.mm.energy import compute_energy, dihedrals, total_energy
from gnnff.testing import assert_parameters_permute, random_rotation


@pytest.mark.parametrize("name", ["aspirin", "glycine_zwitterion", "nitrobenzene", "phosphate"])
def test_relabelling_atoms_permutes_parameters(small_molecules, name):
    mol = small_molecules[name]
    rng = np.random.default_rng(11)
    new_order = rng.permutation(mol.GetNumAtoms())
    permuted = Chem.RenumberAtoms(mol, new_order.tolist())
    a = gnnff.assign_parameters(mol, model="sage", charges="mmff94")
    b = gnnff.assign_parameters(permuted, model="sage", charges="mmff94")
    assert_parameters_permute((a.topology, a.parameters), (b.topology, b.parameters), new_order)
    ea = total_energy(compute_energy(a.topology, a.parameters, torch.as_tensor(positions_nm(a.mol))))
    eb = total_energy(compute_energy(b.topology, b.parameters, torch.as_tensor(positions_nm(b.mol))))
    assert torch.allclose(ea, eb, rtol=1e-10, atol=1e-8)


def test_rigid_motion_leaves_energy_unchanged(small_molecules):
    result = gnnff.assign_parameters(small_molecules["aspirin"], model="sage", charges="mmff94")
    x = positions_nm(result.mol)[0]
    rng = np.random.default_rng(5)
    moved = np.stack([x @ random_rotation(rng).T + rng.normal(size=3) for _ in range(5)])
    e = compute_energy(result.topology, result.parameters, torch.as_tensor(np.concatenate([x[None], moved])))
    for name, values in e.items():
        assert torch.allclose(values, values[:1].expand_as(values), rtol=1e-10, atol=1e-9), name


def test_improper_energy_independent_of_neighbour_order_and_handedness():
    """Trefoil sums over the cyclic orders; the reverse cycle gives negated dihedrals."""
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.normal(size=(6, 4, 3)))
    i = torch.tensor([0])

    def trefoil(a, b, d, n):
        total = 0.0
        for p, q, r in ((a, b, d), (b, d, a), (d, a, b)):
            total = total + torch.cos(n * dihedrals(x, i, torch.tensor([p]), torch.tensor([q]), torch.tensor([r])))
        return total

    for n in (1, 2):
        reference = trefoil(1, 2, 3, n)
        for order in ((2, 3, 1), (3, 1, 2), (1, 3, 2), (3, 2, 1), (2, 1, 3)):
            assert torch.allclose(trefoil(*order, n), reference, atol=1e-12)
