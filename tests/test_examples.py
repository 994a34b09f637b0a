"""The examples run: every molecule file parametrizes, and the tutorials' scripts do what
the tutorials say (the README's quickstart and docs/tutorials/ cannot rot).

``examples/ligand-in-water/run.py`` and ``examples/protein-ligand/run.py`` run at a few
steps in tests/test_simulate.py.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import openmm
import pytest

import gnnff
from gnnff.chem.molecule import read_records

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.*"))


@pytest.mark.sqm
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_parametrizes(path):
    records = list(read_records(path))
    assert records
    for record in records:
        assert record.error is None, str(record.error)
        result = gnnff.assign_parameters(record.mol, model="sage", charges="am1bcc-fast")
        system = result.to_openmm()
        assert system.getNumParticles() == record.mol.GetNumAtoms()
        assert abs(result.parameters.nonbonded.charge.sum().item() - result.topology.net_charge) < 1e-12


def _protein_ligand_options(*argv: str) -> dict:
    script = runpy.run_path(str(ROOT / "examples" / "protein-ligand" / "run.py"), run_name="not_main")
    return vars(script["parse_args"](list(argv)))


def test_protein_ligand_quick_is_a_short_vacuum_run_and_explicit_options_win():
    quick = _protein_ligand_options("--quick")
    assert (quick["solvent"], quick["steps"], quick["minimize_iterations"]) == ("vacuum", 100, 100)
    full = _protein_ligand_options()
    assert (full["solvent"], full["steps"], full["minimize_iterations"]) == ("water", 5000, 0)
    mixed = _protein_ligand_options("--quick", "--steps", "20", "--solvent", "water")
    assert (mixed["solvent"], mixed["steps"], mixed["minimize_iterations"]) == ("water", 20, 100)


def _run_script(script: Path, work: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(["bash", str(script), str(work)], cwd=work.parent, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{script}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_train_from_config_labels_trains_evaluates_and_serves_a_model(tmp_path):
    work = tmp_path / "train"
    done = _run_script(ROOT / "examples" / "train-from-config" / "run.sh", work)
    model = work / "model"
    assert {"model.pt", "last.pt", "splits.json", "metrics.csv", "config.json", "summary.json"} <= {
        p.name for p in model.iterdir()}
    splits = json.loads((model / "splits.json").read_text())
    assert splits["test"] and not set(splits["test"]) & set(splits["train"])  # split by molecule
    assert "sage" in done.stdout and (work / "evaluation").is_dir()
    system = openmm.XmlSerializer.deserialize((work / "ethanol.xml").read_text())
    assert system.getNumParticles() == 9


@pytest.mark.slow
def test_finetune_series_fits_held_out_points_and_a_member_it_never_saw(tmp_path):
    work = tmp_path / "series"
    done = _run_script(ROOT / "examples" / "finetune-series" / "run.sh", work)
    assert "fine-tuned gnnff-v1 on 2 scans of 2 molecules (gfn2-xtb)" in done.stdout
    report = json.loads((work / "series.finetune" / "report" / "summary.json").read_text())
    held_out = report["held_out_rmse"]
    assert held_out["tuned"] < 0.5 * held_out["base"], held_out  # recorded: 1.66 -> 0.20 kcal/mol
    scan = json.loads(next((work / "scan-tuned").rglob("summary.json")).read_text())
    assert scan["points"] == 6 and scan["rmse_kcal_mol"] < 1.0, scan  # the base model: 1.76 kcal/mol
    system = openmm.XmlSerializer.deserialize((work / "bromoanisole.xml").read_text())
    assert system.getNumParticles() == 16
