"""Devices: which names mean what, one-line errors where no GPU is, and the network, the
energy and the training batch keeping to the device of their inputs.

No GPU is needed: torch's ``meta`` device stands in for one. A tensor made on the CPU
inside the network or the energy (a device leak, which would fail on a GPU) meets the meta
tensors of the graph and raises, or leaves a CPU tensor among the outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gnnff
from gnnff.chem.molecule import with_conformer
from gnnff.chem.topology import Topology
from gnnff.errors import InputError
from gnnff.mm.energy import energy_and_forces
from gnnff.nn.checkpoint import graph
from gnnff.nn.devices import resolve_device
from gnnff.nn.network import NetworkConfig, build_network

SMILES = ("CC#N", "CC(=O)[O-]", "c1ccccc1O", "C[NH3+]")


def _gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_device_names(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    _gpus(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    _gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda", rank=1, processes=2) == torch.device("cuda", 1)
    assert resolve_device(" CUDA:1 ") == torch.device("cuda", 1)


@pytest.mark.parametrize("name, gpus, processes, message", [
    ("gpu", 1, 1, "device 'gpu': give cpu, cuda, cuda:N or auto"),
    ("cuda:x", 1, 1, "device 'cuda:x': give cpu, cuda, cuda:N or auto"),
    ("cuda", 0, 1, "sees no CUDA GPU on this machine"),
    ("cuda:2", 2, 1, "device 'cuda:2': this machine has 2 GPU(s), numbered from 0"),
    ("cuda:0", 2, 2, "give cuda (process k uses GPU k)"),
    ("cuda", 1, 2, "each needs a GPU of its own and this machine has 1; use --nproc 1 or fewer"),
])
def test_device_errors_say_what_to_do(monkeypatch, name, gpus, processes, message):
    _gpus(monkeypatch, gpus)
    with pytest.raises(InputError, match="^device '") as err:
        resolve_device(name, processes=processes)
    assert message in str(err.value) and "\n" not in str(err.value)


def _molecules():
    mols = [with_conformer(gnnff.load_molecule(s)) for s in SMILES]
    return mols, [gnnff.build_topology(m) for m in mols]


@pytest.mark.parametrize("config", [
    NetworkConfig(width=16, depth=2, head_width=16, head_depth=1),
    NetworkConfig(width=16, depth=2, head_width=16, head_depth=1, features="v1", nonbonded_width=16,
                  nonbonded_depth=2, torsion_threshold=0.5, linear_angles=True, max_periodicity=3,
                  optional_terms=("urey_bradleys",)),
], ids=["v0", "v1-all-options"])
def test_network_and_energy_stay_on_the_graphs_device(config):
    mols, topologies = _molecules()
    network = build_network(config).to("meta")
    parameters = network(graph(mols, topologies, config.features).to("meta"))
    devices = set()
    parameters.map(lambda term, name, x: devices.add(x.device.type) or x)
    assert devices == {"meta"}
    positions = np.concatenate([m.GetConformer().GetPositions() / 10.0 for m in mols])
    positions = torch.as_tensor(positions, dtype=torch.float32, device="meta")[None]
    energies, forces = energy_and_forces(Topology.batch(topologies), parameters.map(lambda t, n, x: x.float()),
                                         positions, create_graph=True)
    assert energies.device.type == forces.device.type == "meta"
    assert forces.shape == (1, sum(t.n_atoms for t in topologies), 3)


def test_training_batch_moves_every_tensor():
    from gnnff.train.data import MoleculeData
    from gnnff.train.training import make_batch

    mols, _ = _molecules()
    data = []
    for k, mol in enumerate(mols):
        x = np.stack([mol.GetConformer().GetPositions() / 10.0] * 2)
        data.append(MoleculeData(f"m{k}", mol, x, np.array([0.0, 1.0]), np.zeros_like(x), "set"))
    batch = make_batch([(d, None) for d in data], features="v1")
    moved = batch.to(torch.device("meta"))
    tensors = [moved.positions, moved.energies, moved.forces, moved.conformation_molecule,
               *moved.rows.values(), *moved.references.values(), moved.graph.features, moved.graph.edges,
               moved.graph.atomic_numbers, moved.graph.molecule_index, moved.graph.net_charges,
               moved.graph.linear_angles, moved.graph.linear_propers, *moved.graph.tuples.values()]
    assert {t.device.type for t in tensors} == {"meta"}
    assert batch.to(torch.device("cpu")) is batch  # already there: no copy


def test_config_device_is_checked_when_read(tmp_path):
    from gnnff.train.config import load_config

    base = {"data": [{"path": "x.sdf"}], "output": str(tmp_path / "out")}
    assert load_config({**base, "optim": {"device": "cuda:1"}}).optim.device == "cuda:1"
    with pytest.raises(InputError, match=r"^config: optim.device 'tpu': give cpu, cuda, cuda:N or auto$"):
        load_config({**base, "optim": {"device": "tpu"}})


def test_training_on_a_gpu_without_one_stops_before_any_work(tmp_path, monkeypatch):
    from gnnff.train.config import load_config
    from gnnff.train.training import train

    _gpus(monkeypatch, 0)
    config = load_config({"data": [{"path": str(tmp_path / "missing.sdf")}], "output": str(tmp_path / "out"),
                          "optim": {"device": "cuda"}})
    with pytest.raises(InputError, match=r"^config: optim.device 'cuda': torch .* sees no CUDA GPU"):
        train(config)
    assert not (tmp_path / "out").exists()


def test_energies_are_centred_on_their_own_device():
    from gnnff.train.training import centred

    energies = torch.tensor([1.0, 3.0, 10.0], dtype=torch.float64)
    molecule = torch.tensor([0, 0, 1])
    np.testing.assert_array_equal(centred(energies, molecule, 2).numpy(), [-1.0, 1.0, 0.0])
    assert centred(energies.to("meta"), molecule.to("meta"), 2).device.type == "meta"


@pytest.mark.parametrize("name, gpus, expected", [("cpu", 1, False), ("auto", 0, False), ("auto", 1, True),
                                                   ("cuda", 0, True), ("cuda:1", 2, True)])
def test_data_parallel_ranks_add_nccl_only_to_train_on_gpus(monkeypatch, tmp_path, name, gpus, expected):
    """A CPU run on a GPU machine keeps to gloo alone: an NCCL group would claim a GPU per rank
    (and two ranks on one GPU is an NCCL error)."""
    from gnnff.train.config import load_config
    from gnnff.train.parallel import backend
    from gnnff.train.training import trains_on_gpu

    _gpus(monkeypatch, gpus)
    config = load_config({"data": [{"path": "x.sdf"}], "output": str(tmp_path), "optim": {"device": name}})
    assert trains_on_gpu(config) is expected
    assert backend(trains_on_gpu(config)) == ("cpu:gloo,cuda:nccl" if expected else "gloo")
