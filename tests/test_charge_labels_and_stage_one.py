"""Charge / Lennard-Jones labels (resume, failures, snapshot, held-out molecules) and the
separate nonbonded stage trained on them (stage 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.chem.features import atom_features
from gnnff.chem.topology import build_topology
from gnnff.errors import InputError
from gnnff.nn.network import Graph, NetworkConfig, build_network
from gnnff.train.config import load_config
from gnnff.train.labels import add_lennard_jones, label_molecule, label_nonbonded, read_labels

V1 = NetworkConfig(width=32, depth=2, head_width=32, head_depth=1, features="v1", nonbonded_width=32,
                   nonbonded_depth=2, torsion_threshold=0.5, linear_angles=True)


SMILES = ["CCO", "CC(=O)O", "CC(=O)[O-]", "CCN", "CC[NH3+]", "c1ccccc1O", "CC(=O)N", "COC", "CCCl", "c1ccncc1",
          "CS(=O)(=O)N", "CC#N", "OCCO", "CC(C)=O", "NCC(=O)O", "c1ccc(cc1)C(=O)[O-]", "CCOC(=O)C", "CCS",
          "Fc1ccccc1", "CNC(=O)C", "C[N+](C)(C)C", "OC1CCCCC1", "CC(O)C(=O)[O-]", "c1ccoc1", "c1cc[nH]c1",
          "CCCCO", "CC(N)C(=O)O", "O=CC=O", "CC=CC", "ClCCl", "CCC#CC", "NC(=O)N", "COc1ccccc1", "CC(C)N",
          "OC(=O)CC(=O)O", "C1CCNCC1", "CSC", "Brc1ccccc1", "CC[O-]", "OCC(O)CO"]


def _make_labels_script():
    """recipes/v1/make_labels.py as a module (a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "recipes" / "v1" / "make_labels.py"
    spec = importlib.util.spec_from_file_location("make_labels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labels_resume_and_record_failures(tmp_path):
    path = tmp_path / "labels.jsonl"
    molecules = [("CCO", "t"), ("CC(=O)[O-]", "t"), ("not a smiles", "t")]
    counts = label_nonbonded(molecules, path, method="mmff94")
    assert counts == {"done": 0, "labelled": 2, "failed": 1}
    with open(path, "a") as handle:
        handle.write('{"input": "CCN", "sou')  # an interrupted write
    counts = label_nonbonded(molecules + [("CCN", "t")], path, method="mmff94")
    assert counts == {"done": 3, "labelled": 1, "failed": 0}
    entries = list(read_labels(path))
    assert [e["input"] for e in entries] == ["CCO", "CC(=O)[O-]", "not a smiles", "CCN"]
    bad = entries[2]
    assert "error" in bad and "not a smiles" in bad["error"]
    acetate = entries[1]
    assert sum(acetate["charges"]) == pytest.approx(-1.0, abs=1e-5)
    assert len(acetate["sigma"]) == len(acetate["charges"]) == 7


def test_charge_only_labels_completed_with_sage_lennard_jones(tmp_path):
    part, merged = tmp_path / "part.jsonl", tmp_path / "labels.jsonl"
    counts = label_nonbonded([("CC(=O)[O-]", "t"), ("C[NH3+].[Cl-]", "t")], part, method="mmff94",
                             lennard_jones=False)
    assert counts == {"done": 0, "labelled": 1, "failed": 1}
    charge_only = next(read_labels(part))
    assert "sigma" not in charge_only and len(charge_only["charges"]) == 7
    assert add_lennard_jones(part, merged) == {"done": 0, "labelled": 1, "failed": 1}
    assert add_lennard_jones(part, merged) == {"done": 2, "labelled": 0, "failed": 0}  # resumes
    complete = next(read_labels(merged))
    direct = label_molecule("CC(=O)[O-]", "t", "mmff94")
    assert complete["charges"] == charge_only["charges"]
    assert complete["sigma"] == direct["sigma"] and complete["epsilon"] == direct["epsilon"]


def test_label_of_a_salt_is_refused_with_a_message():
    entry = label_molecule("C[NH3+].[Cl-]", "t", "mmff94")
    assert "several components" in entry["error"]


def test_separate_nonbonded_needs_labels():
    with pytest.raises(InputError, match="nonbonded_width > 0 needs a 'nonbonded' section"):
        load_config({"data": [{"path": "x.sdf"}], "output": "out", "network": {"nonbonded_width": 32}})


@pytest.mark.slow
def test_nonbonded_stage_lowers_held_out_error(tmp_path):
    from gnnff.train.config import NonbondedStage
    from gnnff.train.nonbonded_training import (
        _batch,
        _validation_part,
        load_labelled,
        nonbonded_metrics,
        train_nonbonded,
    )

    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in SMILES], labels, method="mmff94")
    stage = NonbondedStage(labels=str(labels), epochs=40, batch_molecules=8, learning_rate=3e-3, patience=40,
                           validation=0.25)
    torch.manual_seed(0)
    network = build_network(V1).nonbonded
    molecules = load_labelled(labels, features="v1")
    held = [_batch([m for m in molecules if _validation_part(m.key, 0.25)], torch.float32)]
    before = nonbonded_metrics(network, held)
    summary = train_nonbonded(network, stage, features="v1", exclude=set(), output=tmp_path)
    after = nonbonded_metrics(network, held)
    assert summary["molecules"]["validation"] >= 3
    assert after["charge_rmse"] < 0.7 * before["charge_rmse"]
    assert after["sigma_rel_rmse"] < 0.7 * before["sigma_rel_rmse"]
    again = train_nonbonded(build_network(V1).nonbonded, stage, features="v1", exclude=set(), output=tmp_path)
    assert again == json.loads((tmp_path / "nonbonded.json").read_text())  # a finished stage is loaded, not redone
    # ... unless the feature code changed since: a stored fingerprint of other features is an error
    stored = json.loads((tmp_path / "nonbonded.json").read_text())
    (tmp_path / "nonbonded.json").write_text(json.dumps({**stored, "feature_fingerprint": "0" * 16}))
    with pytest.raises(InputError, match=r"nonbonded\.pt: trained on features 'v1' as computed by other code.*"
                                         r"delete .* to retrain"):
        train_nonbonded(build_network(V1).nonbonded, stage, features="v1", exclude=set(), output=tmp_path)


@pytest.mark.slow
def test_label_curve_script_measures_stage_one_against_references(tmp_path):
    """benchmarks/training/label_curve.py through a subprocess: stage 1 trained on the first N labels
    for two sizes, scored against a references file; a reference that is among the labels is
    left out, the RMSE in the CSV is that of the saved network, a second run loads instead of
    retraining, and a size beyond the labels is a one-line error."""
    import csv
    import gzip
    import subprocess
    import sys
    from pathlib import Path

    from gnnff.nn.network import NonbondedNetwork
    from gnnff.train.labels import prepared_from_mapped_smiles

    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in SMILES], labels, method="mmff94")
    (tmp_path / "cfg.yaml").write_text(
        "data: [{path: unused.sdf}]\noutput: unused\n"
        "network: {width: 32, depth: 2, head_width: 32, head_depth: 1, features: v1, nonbonded_width: 32,"
        " nonbonded_depth: 2}\n"
        "nonbonded: {labels: labels.jsonl, epochs: 3, batch_molecules: 8, learning_rate: 0.003, patience: 3,"
        " validation: 0.25}\n")
    held_out = ["CCCC(=O)[O-]", "c1ccc(N)cc1", "CCOCC"]
    references = {}
    for smiles in [*held_out, "CCO"]:  # ethanol is among the labels: left out
        entry = label_molecule(smiles, method="mmff94", lennard_jones=False)
        references[entry["smiles"]] = {"charges": (np.asarray(entry["charges"]) + 0.01).tolist()}
    with gzip.open(tmp_path / "refs.json.gz", "wt") as handle:
        json.dump({"method": "am1bcc", "charges": references}, handle)
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(root / "benchmarks" / "training" / "label_curve.py"), "--sizes", "20", "40",
               "--labels", str(labels), "--config", str(tmp_path / "cfg.yaml"),
               "--references", str(tmp_path / "refs.json.gz"), "-o", str(tmp_path / "out")]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "3 reference molecules (1 left out: among the labels)" in first.stdout
    rows = list(csv.DictReader(open(tmp_path / "out" / "label_curve.csv")))
    assert [int(r["labels"]) for r in rows] == [20, 40]
    network = NonbondedNetwork(32, 2, 32, 1)
    network.load_state_dict(torch.load(tmp_path / "out" / "n40" / "nonbonded.pt", weights_only=True))
    errors = []
    for smiles, entry in references.items():
        mol = prepared_from_mapped_smiles(smiles, smiles)
        if Chem.MolToSmiles(Chem.RemoveHs(mol)) == "CCO":
            continue
        graph = Graph.from_topology(build_topology(mol), atom_features(mol, "v1"), torch.float32,
                                    output_dtype=torch.float64)
        with torch.no_grad():
            errors.append(network(graph).charge.numpy() - np.asarray(entry["charges"]))
    assert float(rows[1]["rmse"]) == pytest.approx(float(np.sqrt(np.mean(np.concatenate(errors) ** 2))), rel=1e-6)
    assert (tmp_path / "out" / "label_curve.png").stat().st_size > 10_000
    second = subprocess.run(command, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and second.stdout.count("trained before, loaded") == 2
    too_many = subprocess.run(command[:3] + ["400"] + command[5:], capture_output=True, text=True, check=False)
    assert too_many.returncode == 1
    assert too_many.stderr.strip().splitlines() == [
        f"label_curve.py: error: --sizes 400: {labels} has 40 usable entries; give sizes up to 40"]


def test_label_snapshot_round_trip(tmp_path):
    """recipes/v1/make_labels.py keeps its labels in a committed gzip snapshot: written from
    the complete lines of labels.jsonl (a torn last line left out), restored to the same entries."""
    import json

    from gnnff.train.labels import read_labels

    make_labels = _make_labels_script()
    labels = tmp_path / "labels.jsonl"
    entries = [{"input": "CCO", "charges": [0.1, -0.1]}, {"input": "[Na+]", "error": "x"}]
    labels.write_text("".join(json.dumps(e) + "\n" for e in entries) + '{"input": "CC', encoding="utf-8")
    snapshot = tmp_path / "labels.jsonl.gz"
    make_labels.write_snapshot(labels, snapshot)
    restored = tmp_path / "restored.jsonl"
    make_labels.restore_snapshot(snapshot, restored)
    assert list(read_labels(restored)) == entries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jsonl", "labels.jsonl.gz", "restored.jsonl"]


def test_held_out_molecules_match_however_mapped_and_their_labels_are_dropped(tmp_path):
    """The hold-out key of a molecule is the same for its atom-mapped SMILES (how the industry
    set's training molecules are queued) and for an unmapped, stereo-tagged one (FreeSolv);
    make_labels drops the label entries of held-out molecules and keeps the rest."""
    import json

    from gnnff.chem.molecule import mapped_smiles, plain_smiles
    from gnnff.train.labels import read_labels

    mol = gnnff.load_molecule("C[C@H](O)c1ccccc1")
    assert plain_smiles(mapped_smiles(mol)) == plain_smiles("OC(C)c1ccccc1") == "CC(O)c1ccccc1"
    assert plain_smiles("C1CC") is None
    make_labels = _make_labels_script()
    labels = tmp_path / "labels.jsonl"
    entries = [{"input": mapped_smiles(mol), "charges": [0.0]}, {"input": "CCO", "charges": [0.1]},
               {"input": "[Na+]", "error": "x"}]
    labels.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    assert make_labels.drop_held_out(labels, {"CC(O)c1ccccc1"}) == 1
    assert list(read_labels(labels)) == entries[1:]
    assert make_labels.drop_held_out(labels, {"CC(O)c1ccccc1"}) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]
