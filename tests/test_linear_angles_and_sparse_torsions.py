"""Exact linear angles at sp centres (and no torsion about them), and sparse proper
torsions: small force constants exactly zero, through export, with gradient when pruned."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import openmm
import pytest
import torch

import gnnff
from gnnff.chem.features import atom_features
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.chem.topology import build_topology
from gnnff.errors import ModelError
from gnnff.mm.energy import compute_energy
from gnnff.mm.export import to_openmm
from gnnff.nn.network import Graph, NetworkConfig, build_network
from gnnff.schema import PROPERS

V1 = NetworkConfig(width=32, depth=2, head_width=32, head_depth=1, features="v1", nonbonded_width=32,
                   nonbonded_depth=2, torsion_threshold=0.5, linear_angles=True)


def _random_network(config: NetworkConfig, seed: int = 0) -> torch.nn.Module:
    """A network whose outputs vary strongly with the atom (the trained heads start near constant)."""
    torch.manual_seed(seed)
    network = build_network(config).double().eval()
    with torch.no_grad():
        for name, p in network.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]) * 1.5)
    return network


def _parameters(network, smiles: str):
    mol = gnnff.load_molecule(smiles)
    topology = build_topology(mol)
    with torch.no_grad():
        p = network(Graph.from_topology(topology, atom_features(mol, network.config.features), torch.float64))
    return mol, topology, p


def _openmm_energy(system: openmm.System, x_nm: np.ndarray) -> float:
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x_nm)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


@pytest.mark.parametrize("smiles, vertices", [
    ("CC#N", [1]), ("CC#CC", [1, 2]), ("C=C=C", [1]), ("CN=[N+]=[N-]", [2]), ("O=C=O", [1]),
])
def test_linear_centres_get_theta0_pi_exactly(smiles, vertices):
    mol, topology, p = _parameters(_random_network(V1), smiles)
    angle = p.angles.angle.numpy()
    at_vertex = np.isin(topology.angles[:, 1], vertices)
    assert at_vertex.any()
    assert np.all(angle[at_vertex] == math.pi)
    assert np.all(angle[~at_vertex] < 3.0)
    system = to_openmm(topology, p)
    force = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicAngleForce))
    exported = [force.getAngleParameters(i)[3].value_in_unit(openmm.unit.radian) for i in range(force.getNumAngles())]
    assert [a == math.pi for a in exported] == at_vertex.tolist()


@pytest.mark.parametrize("smiles, centres", [("CC#N", {1}), ("CC#CC", {1, 2}), ("CN=[N+]=[N-]", {2})])
def test_no_torsion_about_a_linear_centre(smiles, centres):
    _, topology, p = _parameters(_random_network(V1), smiles)
    about_centre = np.array([j in centres or k in centres for _, j, k, _ in topology.propers], dtype=bool)
    k = p.propers.k.numpy()
    assert np.all(k[about_centre] == 0.0)
    system = to_openmm(topology, p)
    force = next(f for f in system.getForces() if isinstance(f, openmm.PeriodicTorsionForce))
    exported = {tuple(force.getTorsionParameters(i)[:4]) for i in range(force.getNumTorsions())}
    assert not any(t[1] in centres or t[2] in centres for t in exported)


def test_max_periodicity_limits_the_exported_propers():
    config = dataclasses.replace(V1, max_periodicity=3)
    _, topology, p = _parameters(_random_network(config, seed=2), "CC(=O)Oc1ccccc1C(=O)O")
    k = p.propers.k.numpy()
    assert np.all(k[:, 3:] == 0.0) and np.count_nonzero(k[:, :3]) > 0
    system = to_openmm(topology, p)
    force = next(f for f in system.getForces() if f.getName() == "propers")
    assert {force.getTorsionParameters(i)[4] for i in range(force.getNumTorsions())} <= {1, 2, 3}
    with pytest.raises(ModelError, match="max_periodicity must be 1..6, got 0"):
        NetworkConfig.from_dict({**V1.to_dict(), "max_periodicity": 0})


def test_v0_networks_keep_theta0_below_pi():
    """The option is off for gnnff-industry-v0's architecture: its outputs do not change."""
    config = NetworkConfig(width=32, depth=2, head_width=32, head_depth=1)
    _, topology, p = _parameters(_random_network(config), "CC#N")
    assert np.all(p.angles.angle.numpy() < math.pi)


def test_sparse_torsions_are_exact_zeros_and_survive_export():
    network = _random_network(V1, seed=1)
    mol, topology, p = _parameters(network, "CC(=O)Oc1ccccc1C(=O)O")
    k = p.propers.k.numpy()
    assert 0 < np.count_nonzero(k) < k.size  # some periodicities pruned, some kept
    system = to_openmm(topology, p)
    torsions = next(f for f in system.getForces() if f.getName() == PROPERS.name)
    assert torsions.getNumTorsions() == np.count_nonzero(k)
    x = positions_nm(with_conformer(mol))[0]
    ours = sum(float(e.sum()) for e in compute_energy(topology, p, torch.as_tensor(x)[None]).values())
    assert _openmm_energy(system, x) == pytest.approx(ours, rel=1e-9, abs=1e-6)
    dense = build_network(NetworkConfig(**{**V1.to_dict(), "torsion_threshold": 0.0})).double().eval()
    dense.load_state_dict(network.state_dict())
    with torch.no_grad():
        full = dense(Graph.from_topology(topology, atom_features(mol, "v1"), torch.float64))
    assert np.count_nonzero(full.propers.k.numpy()) == k.size  # the threshold did the pruning


def test_pruned_torsions_still_get_gradient():
    """The threshold passes gradients straight through: a cosine below it can come back."""
    from gnnff.nn.network import _signed_torsion

    raw = torch.tensor([0.01, -0.02, 1.0], dtype=torch.float64, requires_grad=True)
    k, phase = _signed_torsion(raw, threshold=0.2)
    assert k[0].item() == 0.0 and k[1].item() == 0.0 and k[2].item() == pytest.approx(2.0 - 0.2)
    assert phase.tolist() == [0.0, math.pi, 0.0]
    k.sum().backward()
    assert torch.all(raw.grad.abs() > 0)
