"""Every stage that reads coordinates or atom orderings, under rigid motions and atom
relabelling (the helpers of :mod:`gnnff.testing`), in float32 and float64 where it computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.chem.features import atom_features
from gnnff.chem.molecule import positions_nm
from gnnff.mm.energy import energy_and_forces
from gnnff.testing import assert_atoms_permute, assert_parameters_permute, assert_rigid_motion_invariant, openmm_terms

#: relative tolerance of a rigid-motion check per precision
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _torch_energy(result, dtype):
    parameters = result.parameters.to(dtype)

    def evaluate(x):
        energies, forces = {}, None
        for term in parameters.terms:
            e, f = energy_and_forces(result.topology, parameters, torch.as_tensor(x[None], dtype=dtype), term=term)
            energies[term.name] = float(e.detach().sum())
            forces = f[0].double().numpy() if forces is None else forces + f[0].double().numpy()
        return energies, forces

    return evaluate


@pytest.mark.parametrize("name", ["aspirin", "glycine_zwitterion", "bromoiodobenzene"])
def test_torch_energy_is_invariant_and_forces_equivariant(small_molecules, urey_bradley_model, name, dtype):
    result = gnnff.assign_parameters(small_molecules[name], model=str(urey_bradley_model))
    x = positions_nm(result.mol)[0]
    atol = 1e-3 if dtype == torch.float32 else 1e-8  # kJ/mol, kJ/mol/nm
    assert_rigid_motion_invariant(_torch_energy(result, dtype), x, rtol=RTOL[dtype], atol=atol)


def test_exported_system_is_invariant_and_forces_equivariant(small_molecules, urey_bradley_model):
    result = gnnff.assign_parameters(small_molecules["aspirin"], model=str(urey_bradley_model))
    system = result.to_openmm()

    def evaluate(x):
        terms = openmm_terms(system, x)
        return {str(g): e for g, (e, _) in terms.items()}, sum(f for _, f in terms.values())

    assert_rigid_motion_invariant(evaluate, positions_nm(result.mol)[0], rtol=1e-9, atol=1e-7)


@pytest.mark.parametrize("model", ["gnnff-industry-v0", "urey-bradley"])
def test_network_parameters_and_energy_follow_a_relabelling(small_molecules, urey_bradley_model, model):
    model = str(urey_bradley_model) if model == "urey-bradley" else model
    mol = gnnff.load_molecule(small_molecules["glycine_zwitterion"])
    order = np.random.default_rng(3).permutation(mol.GetNumAtoms())
    shuffled = Chem.RenumberAtoms(mol, order.tolist())
    a, b = gnnff.assign_parameters(mol, model=model), gnnff.assign_parameters(shuffled, model=model)
    assert_parameters_permute((a.topology, a.parameters), (b.topology, b.parameters), order, atol=1e-5, rtol=1e-5)
    ea, fa = _torch_energy(a, torch.float64)(positions_nm(a.mol)[0])
    eb, fb = _torch_energy(b, torch.float64)(positions_nm(b.mol)[0])
    assert ea == pytest.approx(eb, rel=1e-5)
    assert_atoms_permute(fa, fb, order, atol=1e-4 * max(1.0, np.abs(fa).max()), what="forces")


@pytest.mark.parametrize("feature_set", ["v0", "v1"])
def test_features_follow_a_relabelling(small_molecules, feature_set):
    for name in ("nitrobenzene", "acetate", "phosphate"):
        mol = gnnff.load_molecule(small_molecules[name])
        order = np.random.default_rng(7).permutation(mol.GetNumAtoms())
        shuffled = gnnff.load_molecule(Chem.RenumberAtoms(mol, order.tolist()))
        assert_atoms_permute(atom_features(mol, feature_set), atom_features(shuffled, feature_set), order,
                             atol=1e-12, what=f"{name} {feature_set} features")


def test_topology_follows_a_relabelling(small_molecules):
    mol = gnnff.load_molecule(small_molecules["aspirin"])
    order = np.random.default_rng(9).permutation(mol.GetNumAtoms())
    a = gnnff.build_topology(mol)
    b = gnnff.build_topology(gnnff.load_molecule(Chem.RenumberAtoms(mol, order.tolist())))
    for term in gnnff.TERMS:
        if term.arity == 1:
            continue
        mapped = {min(tuple(order[np.asarray(row)][list(p)]) for p in term.symmetry) for row in b.indices(term)}
        assert mapped == {min(tuple(np.asarray(row)[list(p)]) for p in term.symmetry) for row in a.indices(term)}, \
            term.name
    assert_atoms_permute(a.atomic_numbers, b.atomic_numbers, order, what="elements")


def test_benchmark_protocol_ignores_rigid_motions(small_molecules):
    """The industry protocol (minimise, RMSD, TFD, ddE) on two conformers that are one
    geometry moved rigidly, with equal QM energies: the same RMSD and TFD, ddE zero."""
    from gnnff.testing import random_rotation
    from gnnff.train.benchmark import BenchmarkMolecule, run_protocol

    mol = gnnff.load_molecule(small_molecules["aspirin"])
    x = mol.GetConformer().GetPositions()
    moved = x @ random_rotation(np.random.default_rng(4)).T + np.array([3.0, -1.0, 2.0])
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for i, xyz in enumerate(moved):
        conformer.SetAtomPosition(i, xyz.tolist())
    mol.AddConformer(conformer, assignId=True)
    results = run_protocol(gnnff.get_model("gnnff-industry-v0"),
                           BenchmarkMolecule("aspirin", mol, np.array([0.0, 0.0]), ["a", "b"]))
    assert results[0].rmsd == pytest.approx(results[1].rmsd, abs=2e-3)
    assert results[0].tfd == pytest.approx(results[1].tfd, abs=2e-3)
    assert abs(results[1].dde) < 1e-2 and np.isnan(results[0].dde)
