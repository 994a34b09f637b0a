"""`gnnff evaluate` on QM minima (every reference force zero) and on mixed data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import gnnff


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
