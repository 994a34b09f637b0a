"""Data readers, splits, config validation, training, checkpoints, evaluation, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_SDF

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.errors import InputError, ModelError
from gnnff.nn.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from gnnff.train.config import load_config
from gnnff.train.data import read_qcarchive_sdf, read_spice_hdf5, split_by_molecule
from gnnff.train.training import train
from gnnff.units import BOHR_TO_NM, HARTREE_TO_KJ, KCAL_TO_KJ


#: one reference cache (MMFF94 charges, Sage LJ of the same 48 molecules) for every training
#: run of a test process: the Sage labelling costs 30 s or more per run and is not what these tests test
_REFERENCES: dict[str, Path] = {}


@pytest.fixture(scope="session", autouse=True)
def _shared_reference_cache(tmp_path_factory):
    _REFERENCES["path"] = tmp_path_factory.getbasetemp() / "reference-cache.json"


def _config(tmp_path: Path, **overrides) -> dict:
    if not SHARED_SDF.is_file():
        pytest.skip(f"shared data not found at {SHARED_SDF}")
    config = {
        "data": [{"path": str(SHARED_SDF), "limit": 48}],
        "output": str(tmp_path / "run"),
        "reference_charges": "mmff94",
        "reference_cache": str(_REFERENCES.get("path", tmp_path / "refs.json")),
        "network": {"width": 48, "depth": 2, "head_width": 48},
        "optim": {"epochs": 6, "batch_molecules": 8, "learning_rate": 0.002, "patience": 20},
        "split": {"validation": 0.25, "test": 0.1, "seed": 3},
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def _metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    result = train(load_config(_config(tmp)))
    return tmp, result


def test_training_lowers_validation_error(trained):
    tmp, result = trained
    rows = _metrics(tmp / "run")
    untrained, best = rows[0], min(rows[1:], key=lambda r: float(r["validation_loss"]))
    assert float(best["validation_energy_rmse"]) < 0.8 * float(untrained["validation_energy_rmse"])
    assert float(best["validation_force_rmse"]) < 0.5 * float(untrained["validation_force_rmse"])
    for name in ("config.json", "splits.json", "summary.json", "model.pt", "last.pt"):
        assert (tmp / "run" / name).is_file()


def test_init_starts_from_a_checkpoint(trained):
    """Fine-tuning: the run starts where the checkpoint ended (its validation loss before
    any step equals the checkpoint's best); another architecture is a clear error."""
    tmp, result = trained
    tuned = load_config(_config(tmp / "tuned", init=result["model"], optim={"epochs": 1, "learning_rate": 1e-12}))
    train(tuned)
    start = float(_metrics(Path(tuned.output))[0]["validation_loss"])
    assert start == pytest.approx(result["best_validation_loss"], rel=1e-6)
    other = load_config(_config(tmp / "other", init=result["model"], network={"width": 32}))
    with pytest.raises(InputError, match=r"init checkpoint .*model.pt does not fit the configured network"):
        train(other)


def test_splits_are_by_molecule(trained):
    tmp, _ = trained
    splits = json.loads((tmp / "run" / "splits.json").read_text())
    parts = [set(splits[k]) for k in ("train", "validation", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_checkpoint_round_trip_and_parametrize(trained, small_molecules):
    tmp, result = trained
    payload = torch.load(result["model"], weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION and payload["domain"]["elements"]
    source = gnnff.get_model(result["model"])
    mol = gnnff.load_molecule(small_molecules["aspirin"])
    a = source.parameters(mol, gnnff.build_topology(mol))
    copy = save_checkpoint(tmp / "copy.pt", source.network, source.config, elements=sorted(source.elements))
    b = gnnff.get_model(str(copy)).parameters(mol, gnnff.build_topology(mol))
    assert a.terms == b.terms
    for term in a.terms:
        for f in term.fields():
            assert torch.equal(getattr(a.term(term), f.name), getattr(b.term(term), f.name))
    system = gnnff.parametrize(mol, model=result["model"])
    assert system.getNumParticles() == mol.GetNumAtoms()


def test_element_outside_model_domain(trained):
    _, result = trained
    with pytest.raises(gnnff.ParametrizationError, match=r"atom 0 \(Si\) is an element model 'model' does not cover"):
        gnnff.parametrize("[SiH4]", model=result["model"])


def test_corrupted_and_mismatched_checkpoints(trained, tmp_path):
    _, result = trained
    broken = tmp_path / "broken.pt"
    broken.write_bytes(Path(result["model"]).read_bytes()[:500])
    with pytest.raises(ModelError, match=r"broken\.pt: not a readable gnnff checkpoint .* corrupted"):
        load_checkpoint(broken)
    payload = torch.load(result["model"], weights_only=True)
    payload["format_version"] = 99
    old = tmp_path / "future.pt"
    torch.save(payload, old)
    with pytest.raises(ModelError, match=r"future\.pt: checkpoint format version 99, .* reads version 1"):
        load_checkpoint(old)
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match=r"not a gnnff checkpoint"):
        gnnff.get_model(str(tmp_path / "other.pt"))


def test_resume_continues_to_the_same_result(tmp_path):
    straight = tmp_path / "straight"
    resumed = tmp_path / "resumed"
    train(load_config(_config(straight, optim={"epochs": 3})))
    train(load_config(_config(resumed, optim={"epochs": 2})))
    train(load_config(_config(resumed, optim={"epochs": 3})), resume=True)
    a, b = _metrics(straight / "run"), _metrics(resumed / "run")
    assert len(b) == 4 and [r["epoch"] for r in b] == ["0", "1", "2", "3"]
    assert float(a[-1]["validation_loss"]) == pytest.approx(float(b[-1]["validation_loss"]), rel=1e-5)


def test_config_rejects_unknown_keys(tmp_path):
    config = _config(tmp_path)
    config["optim"]["learnig_rate"] = 0.1
    with pytest.raises(InputError, match=r"unknown key\(s\) \['learnig_rate'\] in 'optim'"):
        load_config(config)
    with pytest.raises(InputError, match=r"'optim.epochs' must be int"):
        load_config(_config(tmp_path, optim={"epochs": "many"}))
    with pytest.raises(InputError, match=r"missing required key\(s\) \['output'\]"):
        load_config({"data": [{"path": "x.sdf"}]})


def test_cosine_schedule_runs_from_the_learning_rate_to_the_final_one(tmp_path):
    config = load_config(_config(tmp_path, optim={"epochs": 5, "learning_rate": 1e-3, "schedule": "cosine",
                                                  "final_learning_rate": 1e-5}))
    rates = [config.optim.learning_rate_at(e) for e in range(1, 6)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert rates[2] == pytest.approx(0.5 * (1e-3 + 1e-5)) and all(np.diff(rates) < 0)
    assert load_config(_config(tmp_path)).optim.learning_rate_at(4) == load_config(_config(tmp_path)).optim.learning_rate
    with pytest.raises(InputError, match="optim.schedule 'linear' is not one of constant, cosine"):
        load_config(_config(tmp_path, optim={"schedule": "linear"}))


def test_qcarchive_reader_units_and_grouping():
    if not SHARED_SDF.is_file():
        pytest.skip("shared data absent")
    data = read_qcarchive_sdf(SHARED_SDF, limit=3)
    assert len(data) == 3 and len({d.key for d in data}) == 3
    d = data[0]
    assert d.positions.shape == (d.n_conformations, d.mol.GetNumAtoms(), 3)
    assert np.all(d.forces == 0.0)
    import gzip

    from rdkit import Chem

    with gzip.open(SHARED_SDF) as handle:
        first = next(Chem.ForwardSDMolSupplier(handle, removeHs=False))
    np.testing.assert_allclose(d.positions[0], first.GetConformer().GetPositions() / 10.0)
    assert d.energies[0] == pytest.approx(float(first.GetProp("Energy QCArchive")) * KCAL_TO_KJ)


def test_spice_hdf5_reader(tmp_path, small_molecules):
    """A file in the SPICE layout (mapped SMILES with atoms listed out of order) reads back."""
    import h5py
    from rdkit import Chem

    mol = small_molecules["acetate"]
    order = [3, 1, 0, 2, 6, 5, 4]  # file atom i is molecule atom order[i]
    mapped = Chem.Mol(mol)
    for file_index, atom_index in enumerate(order):
        mapped.GetAtomWithIdx(atom_index).SetAtomMapNum(file_index + 1)
    x_nm = positions_nm(mol)[0][order]
    conformations = np.stack([x_nm, x_nm + 0.01]) / BOHR_TO_NM
    with h5py.File(tmp_path / "mini.hdf5", "w") as handle:
        g = handle.create_group("acetate")
        g["smiles"] = [Chem.MolToSmiles(mapped).encode()]
        g["atomic_numbers"] = [mol.GetAtomWithIdx(i).GetAtomicNum() for i in order]
        g["conformations"] = conformations
        g["dft_total_energy"] = [-228.1, -228.0]
        g["dft_total_gradient"] = np.ones_like(conformations) * 0.01
    (d,) = read_spice_hdf5(tmp_path / "mini.hdf5")
    assert [a.GetAtomicNum() for a in d.mol.GetAtoms()] == [mol.GetAtomWithIdx(i).GetAtomicNum() for i in order]
    np.testing.assert_allclose(d.positions[0], x_nm, atol=1e-12)
    assert d.energies[1] - d.energies[0] == pytest.approx(0.1 * HARTREE_TO_KJ)
    np.testing.assert_allclose(d.forces, -0.01 * HARTREE_TO_KJ / BOHR_TO_NM)
    assert gnnff.build_topology(d.mol).net_charge == -1


def test_split_reproducible_from_seed():
    if not SHARED_SDF.is_file():
        pytest.skip("shared data absent")
    data = read_qcarchive_sdf(SHARED_SDF, limit=20)
    a = split_by_molecule(data, (0.6, 0.2, 0.2), seed=1)
    b = split_by_molecule(data, (0.6, 0.2, 0.2), seed=1)
    c = split_by_molecule(data, (0.6, 0.2, 0.2), seed=2)
    keys = lambda parts: [sorted(d.key for d in p) for p in parts]  # noqa: E731
    assert keys(a) == keys(b) and keys(a) != keys(c)
    assert [len(p) for p in a] == [12, 4, 4]


def test_cli_train_and_evaluate(tmp_path):
    import yaml

    config = _config(tmp_path, optim={"epochs": 2})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = lambda *a: subprocess.run([sys.executable, "-m", "gnnff", *a], cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    result = run("train", "config.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained 2 epoch(s)" in result.stdout
    result = run("evaluate", "run/model.pt", str(SHARED_SDF), "--limit", "48", "--splits", "run/splits.json",
                 "--baseline-charges", "mmff94", "-o", "eval")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gnnff" in result.stdout and "sage" in result.stdout
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {r["model"] for r in rows} == {"gnnff", "sage"}
    assert all(r["energy_lo"] <= r["energy_rmse"] <= r["energy_hi"] for r in rows)
    assert (tmp_path / "eval" / "parity-energy-industry-benchmark-dev.png").stat().st_size > 1000
    bad = run("train", "missing.yaml")
    assert bad.returncode == 2 and "missing.yaml: no such config file" in bad.stderr


def test_records_in_two_atom_orders_are_not_mixed(tmp_path, small_molecules):
    """QCArchive records sharing a SMILES can list atoms in different orders."""
    from rdkit import Chem

    from gnnff.train.benchmark import read_benchmark_sdf

    mol = Chem.Mol(small_molecules["ethanol"])
    writer = Chem.SDWriter(str(tmp_path / "two-orders.sdf"))
    for i, order in enumerate(([*range(mol.GetNumAtoms())], [2, 1, 0, *range(3, mol.GetNumAtoms())])):
        record = Chem.RenumberAtoms(mol, order)
        record.SetProp("SMILES QCArchive", "[H]OC([H])([H])C([H])([H])[H]")
        record.SetProp("Energy QCArchive", str(-1000.0 - i))
        record.SetProp("Record QCArchive", str(100 + i))
        writer.write(record)
    writer.close()
    data = read_qcarchive_sdf(tmp_path / "two-orders.sdf")
    assert len(data) == 2 and data[0].key == data[1].key
    for d in data:
        top = d.topology
        lengths = np.linalg.norm(d.positions[:, top.bonds[:, 0]] - d.positions[:, top.bonds[:, 1]], axis=-1)
        assert lengths.max() < 0.16  # every bond has a bond length: coordinates match the graph
    assert [len(m.record_ids) for m in read_benchmark_sdf(tmp_path / "two-orders.sdf")] == [1, 1]


def test_two_processes_reproduce_one_with_the_same_global_batch(tmp_path):
    """Data-parallel training (2 gloo processes, each half of every batch) follows the
    single-process run: same metrics per epoch to float32 rounding, same weights."""
    from gnnff.train.training import train_parallel

    single = train(load_config(_config(tmp_path / "one", optim={"epochs": 2, "threads": 1})))
    double = train_parallel(load_config(_config(tmp_path / "two", optim={"epochs": 2, "threads": 2})), 2)
    assert double["epochs"] == single["epochs"] == 2
    a, b = _metrics(tmp_path / "one" / "run"), _metrics(tmp_path / "two" / "run")
    for row_a, row_b in zip(a, b):
        for name in ("train_loss", "train_energy_rmse", "validation_loss", "validation_force_rmse",
                     "validation_charge_rmse"):
            if row_a[name]:
                assert float(row_b[name]) == pytest.approx(float(row_a[name]), rel=2e-4), (row_a["epoch"], name)
    # the trained force fields agree (weights too, except along directions the loss cannot
    # see, e.g. a uniform shift of electronegativity, where Adam turns rounding into steps)
    pa, pb = (gnnff.assign_parameters("CC(=O)Oc1ccccc1C(=O)O", model=str(tmp_path / run / "run" / "last.pt"))
              .parameters for run in ("one", "two"))
    assert pa.terms == pb.terms
    for term in pa.terms:
        for name in pa.term(term).__dataclass_fields__:
            x, y = getattr(pa.term(term), name), getattr(pb.term(term), name)
            assert torch.allclose(x, y, rtol=1e-3, atol=1e-4), (term.name, name)


LABEL_SMILES = ("CCO", "CC(=O)[O-]", "c1ccccc1O", "CCN", "C[NH3+]", "CC(=O)N", "OC=O", "CCCl", "c1ccncc1",
                "CS(=O)(=O)N")


def test_cli_data_parallel_v1_model_with_stage_one_and_resume(tmp_path):
    """`gnnff train --nproc 2` on a separate-nonbonded (v1) architecture: stage 1 runs once
    (rank 0, the other waits), rank 0 alone writes; --resume continues in 2 processes."""
    import yaml

    from gnnff.train.labels import label_nonbonded

    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in LABEL_SMILES], labels, method="mmff94")
    config = _config(tmp_path, reference_charges=None, optim={"epochs": 2, "threads": 2},
                     network={"features": "v1", "nonbonded_width": 24, "nonbonded_depth": 2},
                     nonbonded={"labels": str(labels), "epochs": 3, "batch_molecules": 4, "validation": 0.3})
    del config["reference_cache"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = lambda *a: subprocess.run([sys.executable, "-m", "gnnff", "train", "config.yaml", *a],  # noqa: E731
                                    cwd=tmp_path, capture_output=True, text=True, timeout=600)
    result = run("--nproc", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained 2 epoch(s)" in result.stdout
    assert result.stdout.count("epoch 2: train loss") == 1  # one rank reports
    stage_one = json.loads((tmp_path / "run" / "nonbonded.json").read_text())
    assert len(stage_one["epochs"]) == 3
    config["optim"]["epochs"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run("--nproc", "2", "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [r["epoch"] for r in _metrics(tmp_path / "run")] == ["0", "1", "2", "3"]
    assert "loaded" in result.stdout + result.stderr  # stage 1 not redone
    model = gnnff.get_model(str(tmp_path / "run" / "model.pt"))
    assert float(gnnff.assign_parameters("CCO", model=model).parameters.nonbonded.charge.sum()) == pytest.approx(0)
    bad = run("--nproc", "0")
    assert bad.returncode == 2 and "--nproc 0: give a number of processes, 1 or more" in bad.stderr
    labels.write_text(labels.read_text().splitlines()[0] + "\n")  # too few labels: stage 1 fails in rank 0
    (tmp_path / "run" / "nonbonded.json").unlink()
    bad = run("--nproc", "2")
    assert bad.returncode == 2 and "usable labelled molecules; need some for training" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_ranks_end_when_their_launcher_is_killed(tmp_path):
    """`gnnff train --nproc 2` started as a shell starts a background job (SIGINT ignored,
    so torch's parent-death SIGINT does nothing) and killed with SIGKILL while rank 0 runs
    stage 1 and rank 1 waits for it: both ranks notice and exit instead of running on as
    orphans."""
    import os
    import signal
    import time

    import yaml

    from gnnff.train.labels import label_nonbonded

    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in LABEL_SMILES], labels, method="mmff94")
    config = _config(tmp_path, reference_charges=None, network={"features": "v1", "nonbonded_width": 24,
                                                                "nonbonded_depth": 2},
                     nonbonded={"labels": str(labels), "epochs": 100000, "patience": 100000, "validation": 0.3})
    del config["reference_cache"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    launcher = subprocess.Popen([sys.executable, "-m", "gnnff", "train", "config.yaml", "--nproc", "2"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    children_file = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    if not children_file.exists():
        launcher.kill()
        pytest.skip("no /proc children list on this system")

    def alive(pid: int) -> bool:  # a zombie has an empty command line
        try:
            return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def ranks() -> list[int]:
        return [p for p in map(int, children_file.read_text().split()) if alive(p)] if children_file.exists() else []

    deadline = time.time() + 120
    while len(ranks()) < 2 or not (tmp_path / "run" / "nonbonded.pt").exists():  # stage 1 under way
        assert time.time() < deadline and launcher.poll() is None, "ranks did not start stage 1"
        time.sleep(0.5)
    pids = ranks()
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 20
    while any(alive(p) for p in pids):
        if time.time() > deadline:
            for p in pids:
                if alive(p):
                    os.kill(p, signal.SIGKILL)
            pytest.fail("ranks outlived their launcher")
        time.sleep(0.5)


def test_urey_bradley_variant_trains_and_train_restores_torch_state(tmp_path):
    """The opt-in term as an architecture variant: its head is trained with the rest (its
    weights move, held-out energy error falls), its checkpoint serves it; and train()
    leaves torch's global random state and thread count as it found them."""
    from gnnff.schema import UREY_BRADLEYS

    torch.manual_seed(1234)
    torch.set_num_threads(1)
    before = torch.get_rng_state()
    config = _config(tmp_path, network={"optional_terms": ["urey_bradleys"]}, optim={"epochs": 4, "threads": 2})
    result = train(load_config(config))
    assert torch.equal(torch.get_rng_state(), before) and torch.get_num_threads() == 1
    rows = _metrics(tmp_path / "run")
    untrained, best = rows[0], min(rows[1:], key=lambda r: float(r["validation_loss"]))
    assert float(best["validation_energy_rmse"]) < 0.9 * float(untrained["validation_energy_rmse"])
    payload = load_checkpoint(result["model"])
    assert UREY_BRADLEYS.name in payload["terms"]
    torch.manual_seed(0)  # train() seeds torch with optim.seed (0) and builds the network first
    fresh = gnnff.nn.network.build_network(gnnff.nn.network.NetworkConfig.from_dict(payload["network"]))
    key = "heads.urey_bradleys.mlp.0.weight"
    assert not torch.allclose(payload["state_dict"][key], fresh.state_dict()[key])
    parameters = gnnff.assign_parameters("CC(=O)Oc1ccccc1C(=O)O", model=result["model"]).parameters
    assert parameters.has(UREY_BRADLEYS) and bool((parameters.urey_bradleys.k > 0).all())
