"""Evaluation: RMSE of relative energies and forces per data set, bootstrapped over
molecules, for a trained model beside the classical Sage baseline, with parity plots.

Reference forces that are all zero (the QM minima of the QCArchive SDF) or missing are
no force reference: such molecules are left out of the force RMSE, and a data set made
only of them gets no force RMSE and no force parity plot, with a note saying why.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from gnnff.errors import GnnffError
from gnnff.files import atomic_write_csv, atomic_write_text
from gnnff.mm.energy import energy_and_forces
from gnnff.sources.models import ParameterSource
from gnnff.train.data import MoleculeData, drop_broken, read_dataset
from gnnff.units import KJ_TO_KCAL, NM_TO_ANGSTROM

__all__ = ["Predictions", "predict_molecules", "bootstrap_rmse", "evaluate"]


@dataclass
class Predictions:
    """Per-molecule relative energies (kcal/mol) and forces (kcal/mol/A), model and reference.

    ``forces`` has an entry only for molecules with reference forces; ``without_forces``
    counts the others (all zero, as at QM minima, or missing).
    """

    name: str
    energy: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    forces: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    without_forces: int = 0


def _energies_forces(source: ParameterSource, d: MoleculeData) -> tuple[np.ndarray, np.ndarray]:
    parameters = source.parameters(d.mol, d.topology).to(torch.float64)
    x = torch.as_tensor(d.positions, dtype=torch.float64)
    e, f = energy_and_forces(d.topology, parameters, x, pairs=d.pairs)
    return e[:, 0].detach().numpy(), f.detach().numpy()


def predict_molecules(source: ParameterSource, data: Sequence[MoleculeData], name: str) -> Predictions:
    """Relative energies and forces of every conformation; molecules the source refuses are listed."""
    out = Predictions(name)
    for d in tqdm(data, desc=f"evaluate {name}", unit="mol", disable=None):
        try:
            e, f = _energies_forces(source, d)
        except GnnffError as err:
            out.failed.append(f"{d.key}: {err}")
            continue
        ref = d.energies
        out.energy.append(((e - e.mean()) * KJ_TO_KCAL, (ref - ref.mean()) * KJ_TO_KCAL))
        known = ~np.isnan(d.forces)
        scale = KJ_TO_KCAL / NM_TO_ANGSTROM
        if np.any(d.forces[known]):
            out.forces.append((f[known] * scale, d.forces[known] * scale))
        else:  # all zero (QM minima) or missing: a parity plot against zero says nothing
            out.without_forces += 1
        out.datasets.append(d.dataset)
    return out


def bootstrap_rmse(pairs: Sequence[tuple[np.ndarray, np.ndarray]], n_boot: int = 1000, seed: int = 0
                   ) -> tuple[float, float, float]:
    """RMSE over all values and its 95% interval from resampling molecules."""
    sse = np.array([float(((p - r) ** 2).sum()) for p, r in pairs])
    n = np.array([p.size for p, _ in pairs], dtype=float)
    if n.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    boot = np.sqrt(sse[draws].sum(1) / np.maximum(n[draws].sum(1), 1))
    return float(np.sqrt(sse.sum() / n.sum())), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def _parity_figure(results: list[Predictions], attr: str, unit: str):
    """One parity panel per source; every panel has the same limits on both axes (square)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [v for res in results for pair in getattr(res, attr) for v in pair if v.size]
    lo, hi = (float(min(v.min() for v in values)), float(max(v.max() for v in values))) if values else (0.0, 1.0)
    pad = 0.03 * (hi - lo) or 1.0
    lo, hi = lo - pad, hi + pad
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        pairs = getattr(res, attr)
        if pairs:
            ax.scatter(np.concatenate([r for _, r in pairs]), np.concatenate([p for p, _ in pairs]), s=4, alpha=0.4)
            ax.set_title(f"{res.name}: RMSE {bootstrap_rmse(pairs)[0]:.2f} {unit}")
        else:
            ax.set_title(f"{res.name}: no data")
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(f"QM ({unit})")
        ax.set_ylabel(f"MM ({unit})")
    fig.tight_layout()
    return fig


def _parity_plot(results: list[Predictions], attr: str, unit: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = _parity_figure(results, attr, unit)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _force_note(res: Predictions) -> str:
    """Why a force RMSE is missing or covers fewer molecules than the energy RMSE ('' if neither)."""
    n, without = len(res.energy), res.without_forces
    if without and without == n:
        return "no force RMSE: every reference force is zero (QM minima) or missing"
    if without:
        return (f"force RMSE over {n - without} of {n} molecules: the others' reference forces are "
                "zero (QM minima) or missing")
    return ""


def evaluate(sources: dict[str, ParameterSource], data_paths: Sequence[str | os.PathLike], *,
             output: str | os.PathLike, keys: set[str] | None = None, limit: int | None = None
             ) -> list[dict]:
    """Evaluate every source on every data file; write ``results.csv``/``.json`` and parity PNGs.

    ``keys`` restricts to molecules whose key (canonical SMILES) is in the set, e.g. the
    test part of a training run's ``splits.json``.
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in data_paths:
        data = drop_broken(read_dataset(path, limit=limit))
        if keys is not None:
            data = [d for d in data if d.key in keys]
        dataset = data[0].dataset if data else Path(path).stem
        results = [predict_molecules(source, data, name) for name, source in sources.items()]
        for res in results:
            energy = bootstrap_rmse(res.energy)
            forces = bootstrap_rmse(res.forces) if res.forces else (None, None, None)
            rows.append({"dataset": dataset, "model": res.name, "molecules": len(res.energy),
                         "conformations": int(sum(p.size for p, _ in res.energy)),
                         "energy_rmse": energy[0], "energy_lo": energy[1], "energy_hi": energy[2],
                         "force_rmse": forces[0], "force_lo": forces[1], "force_hi": forces[2],
                         "failed": len(res.failed), "note": _force_note(res)})
            if res.failed:
                atomic_write_text(out / f"failed-{dataset}-{res.name}.txt", "\n".join(res.failed) + "\n")
        _parity_plot(results, "energy", "kcal/mol", out / f"parity-energy-{dataset}.png")
        if any(res.forces for res in results):
            _parity_plot(results, "forces", "kcal/mol/A", out / f"parity-forces-{dataset}.png")
    atomic_write_csv(out / "results.csv", rows, fieldnames=list(rows[0]) if rows else ["dataset"])
    atomic_write_text(out / "results.json", json.dumps(rows, indent=2))
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table of :func:`evaluate` rows."""
    lines = [f"{'dataset':24s} {'model':16s} {'mols':>5s} {'confs':>6s}  {'energy RMSE kcal/mol':>26s}  "
             f"{'force RMSE kcal/mol/A':>26s}"]
    notes: dict[tuple[str, str], list[str]] = {}  # (dataset, note) -> models
    for r in rows:
        forces = (f"{r['force_rmse']:8.3f} [{r['force_lo']:6.3f}, {r['force_hi']:6.3f}]"
                  if r["force_rmse"] is not None else f"{'-':>8s}")
        lines.append(f"{r['dataset']:24s} {r['model']:16s} {r['molecules']:5d} {r['conformations']:6d}  "
                     f"{r['energy_rmse']:8.3f} [{r['energy_lo']:6.3f}, {r['energy_hi']:6.3f}]  {forces}")
        if r.get("note"):
            notes.setdefault((r["dataset"], r["note"]), []).append(r["model"])
    return "\n".join(lines + [f"note: {dataset} ({', '.join(models)}): {note}"
                              for (dataset, note), models in notes.items()])
