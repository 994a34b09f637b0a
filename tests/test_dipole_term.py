"""The dipole term of the charge stage (stage 1): what it measures and that it trains.

Per-atom charge errors that are small but correlated in space add up to a wrong molecular
dipole; the stage-1 loss can weight the dipole difference on one fixed conformer per molecule.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gnnff.nn.network import NetworkConfig, build_network
from gnnff.train.config import NonbondedStage
from gnnff.train.labels import label_nonbonded
from gnnff.train.nonbonded_training import (
    DEBYE_E_NM,
    _batch,
    dipole_errors,
    load_labelled,
    nonbonded_metrics,
    train_nonbonded,
    with_conformers,
)

NETWORK = NetworkConfig(width=32, depth=2, head_width=32, head_depth=1, features="v1", nonbonded_width=32,
                        nonbonded_depth=2)
SMILES = ["CCO", "CC(=O)O", "CC(=O)[O-]", "c1ccccc1O", "CC#N", "CN(C)C=O", "OCCN", "C[NH3+]", "CC(=O)OC",
          "c1ccncc1", "COc1ccccc1", "ClCCO", "FC(F)C=O", "CS(=O)(=O)N", "NC(=O)c1ccccc1", "OC(=O)CC(=O)[O-]"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dipole_difference_is_the_sum_of_charge_errors_times_positions_and_origin_free(dtype):
    rng = np.random.default_rng(0)
    q = torch.as_tensor(rng.normal(size=7), dtype=dtype)
    q_ref = torch.as_tensor(rng.normal(size=7), dtype=dtype)
    q_ref[:4] += (q[:4].sum() - q_ref[:4].sum()) / 4  # molecule 0 (atoms 0-3): equal net charges
    q_ref[4:] += (q[4:].sum() - q_ref[4:].sum()) / 3  # molecule 1 (atoms 4-6)
    x = torch.as_tensor(rng.normal(size=(7, 3)), dtype=dtype)
    molecule = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    got = dipole_errors(q, q_ref, x, molecule, 2)
    expected = [((q - q_ref)[:4, None] * x[:4]).sum(0), ((q - q_ref)[4:, None] * x[4:]).sum(0)]
    torch.testing.assert_close(got, torch.stack(expected))
    shifted = dipole_errors(q, q_ref, x + torch.tensor([3.0, -2.0, 5.0], dtype=dtype), molecule, 2)
    torch.testing.assert_close(shifted, got)


def test_conformers_are_embedded_once_and_reused_from_the_cache(tmp_path):
    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in SMILES[:4]], labels, method="mmff94")
    molecules = load_labelled(labels, features="v1")
    first = with_conformers(molecules, tmp_path / "conformers.npz")
    assert all(m.positions is not None and m.positions.shape == (len(m.charges), 3) for m in first)
    # bond lengths in nm: a C-O or C-C bond is 0.12-0.16 nm
    ethanol = next(m for m in first if len(m.charges) == 9)
    assert 0.12 < np.linalg.norm(ethanol.positions[0] - ethanol.positions[1]) < 0.16
    stamp = (tmp_path / "conformers.npz").stat().st_mtime_ns
    again = with_conformers(molecules, tmp_path / "conformers.npz")
    assert (tmp_path / "conformers.npz").stat().st_mtime_ns == stamp  # nothing new to embed: not rewritten
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.positions, b.positions)


def test_unknown_stage_key_names_the_dipole_weight_among_the_known_ones(tmp_path):
    from gnnff.errors import InputError
    from gnnff.train.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("data: [{path: x.h5}]\noutput: out\nnonbonded: {labels: l.jsonl, dipol: 1.0}\n")
    with pytest.raises(InputError, match=r"unknown key\(s\) \['dipol'\].*'dipole'"):
        load_config(path)


@pytest.mark.slow
def test_dipole_weight_lowers_the_held_out_dipole_error(tmp_path):
    """Same data, seed and epochs with and without the dipole term: the term lowers the
    validation dipole error and keeps the per-atom charge error of the same order."""
    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in SMILES], labels, method="mmff94")
    results = {}
    for weight in (0.0, 1.0):
        out = tmp_path / f"w{weight}"
        out.mkdir()
        stage = NonbondedStage(labels=str(labels), epochs=30, batch_molecules=4, learning_rate=3e-3,
                               patience=30, validation=0.3, dipole=weight)
        torch.manual_seed(0)
        network = build_network(NETWORK).nonbonded
        train_nonbonded(network, stage, features="v1", exclude=set(), output=out, seed=0)
        held = with_conformers(load_labelled(labels, features="v1"), tmp_path / "conformers.npz")
        results[weight] = nonbonded_metrics(network, [_batch(held, torch.float32)])
        best = json.loads((out / "nonbonded.json").read_text())["best"]["dipole_rmse"]
        assert best > 0 if weight else math.isnan(best)  # measured only where the term is on
    assert results[1.0]["dipole_rmse"] < results[0.0]["dipole_rmse"]
    assert results[1.0]["charge_rmse"] < 2.0 * results[0.0]["charge_rmse"]
    assert DEBYE_E_NM == pytest.approx(0.0208194, rel=1e-5)
