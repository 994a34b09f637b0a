"""gnnff's torch energy equals OpenMM's (Reference platform) term by term."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.chem.topology import Topology
from gnnff.mm.energy import compute_energy, forces, total_energy
from gnnff.schema import TERMS, ForceFieldParameters
from gnnff.testing import compare_with_openmm, openmm_terms

ENERGY_RTOL = 1e-6
FORCE_ATOL = 1e-4  # kJ/mol/nm


def test_benchmark_set_with_sage_matches_openmm(benchmark_molecules):
    """>= 50 molecules of the shared DFT set (charged included), 2 conformers each."""
    charges = [Chem.GetFormalCharge(m) for m in benchmark_molecules]
    assert len(benchmark_molecules) >= 50
    assert {-2, -1, 1, 2} <= set(charges)
    worst = {term.name: (0.0, 0.0) for term in TERMS}
    for mol in benchmark_molecules:
        result = gnnff.assign_parameters(mol, model="sage", charges="mmff94")
        deviations = compare_with_openmm(result.topology, result.parameters, result.to_openmm(),
                                         positions_nm(result.mol))
        for name, (de, df) in deviations.items():
            assert de < ENERGY_RTOL, f"{mol.GetProp('_Name')}: {name} energy off by {de:.2e} (relative)"
            assert df < FORCE_ATOL, f"{mol.GetProp('_Name')}: {name} forces off by {df:.2e} kJ/mol/nm"
            worst[name] = (max(worst[name][0], de), max(worst[name][1], df))
    print("worst relative energy / absolute force deviation per term:", worst)


def _random_parameters(topology: Topology, seed: int, dtype=torch.float64) -> ForceFieldParameters:
    """Arbitrary but physical-range parameters, general proper phases."""
    g = torch.Generator().manual_seed(seed)
    counts = topology.counts()

    def draw(term, name, shape):
        u = torch.rand(shape, generator=g, dtype=dtype)
        if name == "phase" and term.name == "propers":
            return 2 * math.pi * u
        if name == "phase":
            return math.pi * (u > 0.5).to(dtype)
        scale = {"k": 300.0, "length": 0.15, "angle": 2.0, "charge": 0.8, "sigma": 0.3,
                 "epsilon": 0.5}[name]
        return scale * (u - 0.5 if name in ("charge",) else u + 0.1)

    containers = {}
    for term in TERMS:
        fields = {}
        for f in term.fields():
            shape = (counts[term.name],) + ((len(term.periodicities),) if f.metadata["periodic"] else ())
            fields[f.name] = draw(term, f.name, shape)
        containers[term.name] = term.parameters(**fields)
    return ForceFieldParameters(**containers)


@pytest.mark.parametrize("name", ["aspirin", "nitrobenzene", "cyclopropane", "phosphate", "glycine_zwitterion"])
def test_random_parameters_and_distorted_geometry_match_openmm(small_molecules, name):
    """General phases and off-equilibrium geometries prove the sign and form conventions."""
    mol = gnnff.load_molecule(small_molecules[name])
    topology = gnnff.build_topology(mol)
    parameters = _random_parameters(topology, seed=len(name))
    rng = np.random.default_rng(3)
    x = positions_nm(mol) + rng.normal(scale=0.01, size=(4, mol.GetNumAtoms(), 3))
    system = gnnff.to_openmm(topology, parameters)
    for term_name, (de, df) in compare_with_openmm(topology, parameters, system, x).items():
        assert de < ENERGY_RTOL, f"{term_name}: {de:.2e}"
        assert df < FORCE_ATOL, f"{term_name}: {df:.2e}"


def test_float32_energies_close_to_float64(small_molecules):
    mol = gnnff.load_molecule(small_molecules["aspirin"])
    result = gnnff.assign_parameters(mol, model="sage", charges="mmff94")
    x = torch.as_tensor(positions_nm(mol))
    e64 = total_energy(compute_energy(result.topology, result.parameters, x))
    e32 = total_energy(compute_energy(result.topology, result.parameters.to(torch.float32), x.float()))
    assert e32.dtype == torch.float32
    assert torch.allclose(e32.double(), e64, rtol=1e-5, atol=1e-3)
    reference = sum(e for e, _ in openmm_terms(result.to_openmm(), x[0].numpy()).values())
    assert abs(e64.item() - reference) < 1e-6 * max(1.0, abs(reference))


def test_batch_of_molecules_equals_molecules_one_by_one(small_molecules):
    names = ["ethanol", "acetate", "benzene"]
    results = [gnnff.assign_parameters(small_molecules[n], model="sage", charges="mmff94") for n in names]
    batch = Topology.batch([r.topology for r in results])
    parameters = ForceFieldParameters(**{
        term.name: term.parameters(**{
            f.name: torch.cat([getattr(r.parameters.term(term), f.name) for r in results])
            for f in term.fields()
        })
        for term in results[0].parameters.terms
    })
    x = torch.cat([torch.as_tensor(positions_nm(r.mol)) for r in results], dim=1)
    batched = compute_energy(batch, parameters, x)
    for m, r in enumerate(results):
        single = compute_energy(r.topology, r.parameters, torch.as_tensor(positions_nm(r.mol)))
        for term in results[0].parameters.terms:
            assert torch.allclose(batched[term.name][:, m], single[term.name][:, 0], rtol=1e-12, atol=1e-9)
    # no cross-molecule nonbonded pairs: forces on molecule 0 do not depend on molecule 1
    f_all = forces(batch, parameters, x)
    f_0 = forces(results[0].topology, results[0].parameters, torch.as_tensor(positions_nm(results[0].mol)))
    n0 = results[0].topology.n_atoms
    assert torch.allclose(f_all[:, :n0], f_0, atol=1e-9)


def test_nonbonded_chunking_does_not_change_energy(small_molecules, monkeypatch):
    from gnnff.mm import energy as energy_module

    result = gnnff.assign_parameters(small_molecules["aspirin"], model="sage", charges="mmff94")
    x = torch.as_tensor(positions_nm(result.mol))
    full = compute_energy(result.topology, result.parameters, x)["nonbonded"]
    monkeypatch.setattr(energy_module, "MAX_PAIRS_PER_CHUNK", 7)
    assert max(len(c) for c in energy_module.nonbonded_pairs(result.topology)) < 7 + result.topology.n_atoms
    chunked = compute_energy(result.topology, result.parameters, x)["nonbonded"]
    assert torch.allclose(full, chunked, rtol=1e-12)
