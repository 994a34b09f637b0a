"""The report: plots, ``scans.csv``, ``conformers.csv`` and ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from gnnff.files import atomic_write, atomic_write_csv, atomic_write_text
from gnnff.train.finetune.evaluate import ScanProfiles, _pooled, _pooled_conformers
from gnnff.train.finetune.labels import _slug

__all__ = ["summarise", "write_report"]

SOURCES = ("base", "tuned")


def write_report(folder: Path, scans: Sequence[ScanProfiles], conformer_rows: list[dict],
                 history: list[dict[str, float]], legend: dict[str, str]) -> list[dict]:
    """Write the report into ``folder``: one PNG per scan (its profiles, named in the plot by
    ``legend``: ``reference``, ``base``, ``tuned`` -> label), ``scans.csv`` (one row per
    scan, returned), ``conformers.csv`` (when there are conformer rows) and ``fit.png``
    (the loss history)."""
    from gnnff.chem.molecule import name_of
    from gnnff.train.scan import plot_profiles

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in scans:
        mol, s = e.mol, e.scan
        name = f"{_slug(mol)}-{'-'.join(map(str, s.torsion))}"
        plot_profiles(folder / f"{name}.png", s.targets.tolist(), {legend[k]: v for k, v in e.profiles.items()},
                      name_of(mol), s.torsion, held_out=e.held)
        row = {"molecule": name_of(mol), "torsion": "-".join(map(str, s.torsion)), "plot": f"{name}.png",
               "points": len(s.targets), "held_out": int(e.held.sum()), "scan_held_out": e.whole,
               "labelling_seconds": round(s.seconds, 1)}
        for k in SOURCES:
            row[f"{k}_fitted_rmse"] = e.rmse(k, held=False)
            row[f"{k}_held_out_rmse"] = e.rmse(k, held=True)
        rows.append(row)
    atomic_write_csv(folder / "scans.csv", rows)
    if conformer_rows:
        atomic_write_csv(folder / "conformers.csv", conformer_rows)
    _plot_history(folder / "fit.png", history)
    return rows


def summarise(folder: Path, rows: list[dict], conformer_rows: list[dict], *, model: str, base: str, labeler: str,
              molecules: int, failed: list[dict], seconds: dict[str, float], settings: dict[str, Any], work: str,
              report: str) -> dict[str, Any]:
    """The run's summary, also written to ``folder/summary.json``: the tuned ``model``, its
    ``base``, the ``labeler``, the molecules, scans and failures, the pooled RMSEs (kcal/mol)
    of the base and tuned profiles (held out, of the scans held out whole, fitted) and
    conformer energies, the timing split, the settings and the folders."""
    def pooled(subset: list[dict], key: str) -> dict[str, float]:
        return {k: _pooled(subset, f"{k}_{key}") for k in SOURCES}

    summary = {"model": model, "base": base, "labeler": labeler, "molecules": molecules, "scans": len(rows),
               "failed": failed,
               "held_out_rmse": pooled([r for r in rows if not r["scan_held_out"]], "held_out_rmse"),
               "held_out_scan_rmse": pooled([r for r in rows if r["scan_held_out"]], "held_out_rmse"),
               "held_out_scans": sum(r["scan_held_out"] for r in rows),
               "fitted_rmse": pooled(rows, "fitted_rmse"),
               "conformer_rmse": {k: _pooled_conformers(conformer_rows, f"{k}_rmse") for k in SOURCES},
               "seconds": seconds, "settings": settings, "work": work, "report": report}
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _plot_history(path: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for key, label in (("energy_rmse", "energy RMSE (kcal/mol)"), ("force_rmse", "force RMSE (kcal/mol/A)"),
                       ("profile_rmse", "relaxed-profile RMSE (kcal/mol)")):
        ax.plot([h[key] for h in history], label=label)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)

