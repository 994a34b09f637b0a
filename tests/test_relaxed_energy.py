"""The relaxed conformer-energy loss (loss.relaxed_energy): which conformations count as QM
minima, the batched L-BFGS relaxation against OpenMM's minimiser, the envelope-theorem
gradient against finite differences, the config checks, and a training run that uses it."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import openmm
import pytest
import torch
from conftest import SHARED_SDF
from openmm import unit

import gnnff
from gnnff.errors import InputError
from gnnff.mm.energy import compute_energy, total_energy
from gnnff.nn.checkpoint import load_checkpoint, network_from_checkpoint
from gnnff.train.config import load_config
from gnnff.train.data import drop_broken, read_qcarchive_sdf
from gnnff.train.parallel import World
from gnnff.train.training import (
    _relax_molecules,
    expand,
    make_batch,
    minima,
    relax_minima,
    relaxed_errors,
    train,
)
from gnnff.units import KJ_TO_KCAL


@pytest.fixture(scope="module")
def v1():
    from pathlib import Path

    payload = load_checkpoint(Path(gnnff.__file__).parent / "weights" / "gnnff-v1.pt")
    network, config = network_from_checkpoint(payload)
    return network.double(), config

@pytest.fixture(scope="module")
def molecules():
    if not SHARED_SDF.is_file():
        pytest.skip(f"shared data not found at {SHARED_SDF}")
    data = drop_broken(read_qcarchive_sdf(SHARED_SDF, dataset="industry-dev", limit=120))
    # the smallest molecules with at least four QM minima, so a test relaxes in seconds
    return sorted([d for d in data if len(d.energies) >= 4], key=lambda d: d.topology.n_atoms)[:3]

def _energies(network, batch, x):
    with torch.no_grad():
        parameters = expand(network(batch.graph), batch.rows)
        return total_energy(compute_energy(batch.replicas, parameters, x, pairs=batch.pairs))[0].numpy()

def test_minima_are_conformations_with_every_force_known_and_zero(v1, molecules):
    _network, config = v1
    batch = make_batch([(d, None) for d in molecules], dtype=torch.float64, features=config.features)
    assert bool(minima(batch).all())
    forces = batch.forces.clone()
    first = np.cumsum([0] + [d.topology.n_atoms * len(d.energies) for d in molecules])
    forces[first[1] + 2, 0] = 0.5  # one atom of the second molecule's first conformation pushed
    forces[first[2], 1] = float("nan")  # one component of the third molecule's first conformation unknown
    batch = dataclasses.replace(batch, forces=forces)
    expected = np.ones(len(batch.energies), dtype=bool)
    expected[len(molecules[0].energies)] = False
    expected[len(molecules[0].energies) + len(molecules[1].energies)] = False
    assert minima(batch).numpy().tolist() == expected.tolist()

def test_relaxation_reaches_openmms_minimum_and_leaves_the_others(v1, molecules):
    network, config = v1
    batch = make_batch([(d, None) for d in molecules], dtype=torch.float64, features=config.features)
    mask = minima(batch)
    mask[: len(molecules[0].energies)] = False  # the first molecule stays put
    x = relax_minima(network(batch.graph), batch, mask, steps=1000)
    n0 = molecules[0].topology.n_atoms * len(molecules[0].energies)
    assert torch.equal(x[0, :n0], batch.positions[0, :n0])
    relaxed = _energies(network, batch, x) * KJ_TO_KCAL
    start = _energies(network, batch, batch.positions) * KJ_TO_KCAL
    k = len(molecules[0].energies)
    assert np.all(relaxed[k:] < start[k:] - 0.1) and np.allclose(relaxed[:k], start[:k])
    # OpenMM's minimiser on the exported System, from the same QM minima
    model = gnnff.get_model("gnnff-v1")
    offset = k
    for d in molecules[1:]:
        system = gnnff.parametrize(d.mol, model=model)
        context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
        for i, xyz in enumerate(d.positions):
            context.setPositions(xyz)
            openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 3000)
            e = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)
            assert relaxed[offset + i] == pytest.approx(e, abs=0.05)
        offset += len(d.energies)

def test_relaxed_energy_gradient_is_the_partial_one_at_the_minimum(v1, molecules):
    """Envelope theorem: d/dt E(x*(t), p(t)) = dE/dp . dp/dt at fixed x*, checked by
    relaxing again with every torsion force constant scaled by (1 +/- h)."""
    network, config = v1
    batch = make_batch([(molecules[1], None)], dtype=torch.float64, features=config.features)
    mask = minima(batch)
    with torch.no_grad():
        base = network(batch.graph)

    def scaled(t: float):
        return base.map(lambda term, name, x: x * (1 + t) if (term.name == "propers" and name == "k") else x)

    t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    x = relax_minima(scaled(0.0), batch, mask, steps=2000)
    parameters = base.map(lambda term, name, v: v * (1 + t) if (term.name == "propers" and name == "k") else v)
    energy = total_energy(compute_energy(batch.replicas, expand(parameters, batch.rows), x, pairs=batch.pairs))[0]
    (analytic,) = torch.autograd.grad(energy.sum(), t)
    h = 1e-3
    plus, minus = (total_energy(compute_energy(batch.replicas, expand(scaled(s), batch.rows),
                                               relax_minima(scaled(s), batch, mask, steps=2000),
                                               pairs=batch.pairs))[0].sum() for s in (h, -h))
    numeric = float((plus - minus) / (2 * h))
    assert abs(float(analytic)) > 1.0  # the torsions matter at these minima
    assert float(analytic) == pytest.approx(numeric, rel=0.02, abs=0.05)

def test_relaxed_errors_count_molecules_with_two_minima_and_relax_the_collated_ones_alike(v1, molecules):
    network, config = v1
    pair = molecules[:2]
    batch = make_batch([(d, None) for d in pair], dtype=torch.float64, features=config.features)
    with torch.no_grad():
        parameters = network(batch.graph)
    every = relaxed_errors(parameters, batch, steps=2000)
    assert every.shape == (sum(len(d.energies) for d in pair),)
    assert abs(float(every[: len(molecules[0].energies)].sum())) < 1e-9  # centred per molecule
    # the first molecule collated alone (what training relaxes) and its leading parameter rows
    collated = make_batch([(d, None) for d in pair], dtype=torch.float64, features=config.features,
                          relax_molecules=1)
    alone = collated.relax
    assert alone is not None and alone.energies.shape == (len(molecules[0].energies),)
    size = {name: int(r.max()) + 1 if r.numel() else 0 for name, r in alone.rows.items()}
    with torch.no_grad():
        own = network(alone.graph)
    lead = parameters.map(lambda term, name, x: x[: size[term.name]])
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(*(
        [p.term(t).__dict__[f] for t in p.terms for f in p.term(t).__dict__] for p in (own, lead))))
    first = relaxed_errors(lead, alone, steps=2000)
    assert first.shape == (len(molecules[0].energies),)
    # a joint L-BFGS problem with or without the other molecule: converged, the same minima (kcal/mol)
    assert torch.allclose(first, every[: len(molecules[0].energies)], atol=0.02)
    assert make_batch([(d, None) for d in pair], features=config.features, relax_molecules=2).relax is None
    # a molecule without minima (MD frames: forces not zero) is passed over and the chosen one put first
    frames = dataclasses.replace(pair[0], forces=np.ones_like(pair[0].forces))
    mixed = make_batch([(frames, None), (pair[1], None)], dtype=torch.float64, features=config.features,
                       relax_molecules=1)
    assert mixed.relax is not None and mixed.relax.energies.shape == (len(pair[1].energies),)
    assert torch.equal(mixed.energies[: len(pair[1].energies)], mixed.relax.energies)

def test_relaxed_molecules_are_shared_among_training_processes(tmp_path):
    # loss.relaxed_molecules counts per global batch: split over the ranks (the remainder to
    # the first), at least one each, none without the term; the sum never depends on the
    # number of processes beyond that floor
    base = {"data": [{"path": "x.sdf"}], "output": str(tmp_path)}
    config = load_config({**base, "loss": {"relaxed_energy": 1.0, "relaxed_molecules": 5}})
    shares = {size: [_relax_molecules(config, World(rank, size)) for rank in range(size)] for size in (1, 2, 3, 8)}
    assert shares[1] == [5] and shares[2] == [3, 2] and shares[3] == [2, 2, 1]
    assert shares[8] == [1] * 8  # every rank relaxes at least one: 0 would mean all of its shard
    off = load_config({**base, "loss": {"relaxed_energy": 0.0, "relaxed_molecules": 5}})
    assert _relax_molecules(off, World(1, 2)) == 0


def test_config_rejects_a_negative_weight_or_no_steps(tmp_path):
    base = {"data": [{"path": "x.sdf"}], "output": str(tmp_path)}
    with pytest.raises(InputError, match=r"loss.relaxed_energy and loss.relaxed_molecules must be >= 0 and "
                                         r"loss.relax_steps >= 1, got -1.0, 4 and 300"):
        load_config({**base, "loss": {"relaxed_energy": -1.0}})
    with pytest.raises(InputError, match=r"got 1.0, 4 and 0"):
        load_config({**base, "loss": {"relaxed_energy": 1.0, "relax_steps": 0}})

@pytest.mark.slow
def test_fine_tune_with_the_relaxed_term_lowers_its_error(tmp_path, molecules):
    """Two epochs from gnnff-v1 on 40 molecules of the shared set with only the relaxed term
    (and the torsion priors): its training error goes down and is reported in metrics.csv."""
    from pathlib import Path

    network = {"width": 128, "depth": 4, "head_width": 128, "head_depth": 2, "features": "v1",
               "nonbonded_width": 128, "nonbonded_depth": 6, "torsion_threshold": 1.3, "linear_angles": True,
               "max_periodicity": 3}
    config = load_config({
        "data": [{"path": str(SHARED_SDF), "limit": 40}], "output": str(tmp_path / "run"),
        "init": str(Path(gnnff.__file__).parent / "weights" / "gnnff-v1.pt"), "reference_charges": None,
        "network": network, "split": {"validation": 0.2, "test": 0.1, "seed": 0},
        "loss": {"energy": 0.0, "forces": 0.0, "relaxed_energy": 1.0, "relax_steps": 100, "relaxed_molecules": 0},
        "optim": {"epochs": 3, "batch_molecules": 8, "learning_rate": 3e-4, "patience": 10, "threads": 1},
        "nonbonded": {"labels": "unused.jsonl"},
    })
    train(config)
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    train_error = [float(r["train_relaxed_rmse"]) for r in rows[1:]]
    assert all(np.isfinite(train_error)) and train_error[-1] < train_error[0]
    assert np.isfinite(float(rows[0]["validation_relaxed_rmse"]))
