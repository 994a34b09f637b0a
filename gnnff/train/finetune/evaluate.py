"""Evaluation: relaxed profiles and conformer energies of the base and tuned models against the labeler."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from rdkit import Chem

from gnnff.train.finetune.labels import ConformerLabels, ScanLabels
from gnnff.units import KJ_TO_KCAL

__all__ = ["ScanProfiles", "evaluate"]


@dataclass(frozen=True, eq=False)
class ScanProfiles:
    """One scan's relative profiles (kcal/mol, :func:`_profiles`: ``reference`` and one per
    source), the mask of its held-out points, and whether the whole scan was held out."""

    mol: Chem.Mol
    scan: ScanLabels
    profiles: dict[str, np.ndarray]
    held: np.ndarray
    whole: bool

    def rmse(self, source: str, held: bool) -> float:
        """RMSE (kcal/mol) of ``source``'s profile against the labeler's on the held-out or the fitted points."""
        mask = self.held if held else ~self.held
        return _rmse(self.profiles[source][mask], self.profiles["reference"][mask])


def evaluate(labelled: Sequence[tuple[Chem.Mol, list[ScanLabels], ConformerLabels | None]],
             fitted: Sequence[list[ScanLabels]], sources: dict[str, Any], hold_out: int, *,
             progress: bool) -> tuple[list[ScanProfiles], list[dict]]:
    """Every scan's profiles under each of ``sources`` (name -> parameter source), in order,
    and a row per molecule with two or more labelled conformers: their RMSE per source.
    A scan after a molecule's ``fitted`` ones was held out whole; of the others every
    ``hold_out``-th point was."""
    from tqdm import tqdm

    from gnnff.api import assign_parameters
    from gnnff.chem.molecule import name_of

    scans_out, conformer_rows = [], []
    for (mol, scans, confs), fit_scans in tqdm(list(zip(labelled, fitted)), desc="report", unit="mol",
                                               disable=not progress, leave=False):
        systems = {k: assign_parameters(mol, model=source).to_openmm() for k, source in sources.items()}
        if confs is not None and len(confs.energies) >= 2:
            conformer_rows.append({"molecule": name_of(mol), "conformers": len(confs.energies),
                                   "labelling_seconds": round(confs.seconds, 1),
                                   **{f"{k}_rmse": v for k, v in _conformer_rmse(confs, systems).items()}})
        for n, s in enumerate(scans):  # each model's System once per molecule, whatever its number of scans
            whole = n >= len(fit_scans)  # a scan held out entirely
            held = np.ones(len(s.targets), dtype=bool) if whole else s.held_out(hold_out)
            scans_out.append(ScanProfiles(mol, s, _profiles(s, systems), held, whole))
    return scans_out, conformer_rows


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else float("nan")


def _profiles(scan: ScanLabels, systems: dict[str, Any]) -> dict[str, np.ndarray]:
    """Relative profiles (kcal/mol): the labeler's, then each System minimised with the
    dihedral restrained at the labeler's geometries."""
    from gnnff.train.scan import ScanPoint, mm_profile

    reference = [ScanPoint(float(t), float(d), float(e), x)
                 for t, d, e, x in zip(scan.targets, scan.dihedrals, scan.energies, scan.positions)]
    out = {"reference": scan.energies * KJ_TO_KCAL}
    for name, system in systems.items():
        points = mm_profile(system, reference, scan.torsion)
        out[name] = np.array([p.energy for p in points]) * KJ_TO_KCAL
    return {k: v - v.min() for k, v in out.items()}


def _conformer_rmse(conformers: ConformerLabels, systems: dict[str, Any]) -> dict[str, float]:
    """RMSE (kcal/mol) of each System's relative energies of the labelled conformers, each
    minimised with it (no restraint) from the labeler's minimum, against the labeler's;
    both relative to their mean (as the relaxed loss fits them)."""
    from gnnff.train.scan import ScanPoint, mm_profile

    start = [ScanPoint(0.0, math.nan, 0.0, x) for x in conformers.positions]
    reference = conformers.energies - conformers.energies.mean()
    out = {}
    for name, system in systems.items():
        e = np.array([p.energy for p in mm_profile(system, start, None)])
        out[name] = _rmse((e - e.mean()) * KJ_TO_KCAL, reference * KJ_TO_KCAL)
    return out


def _pooled_conformers(rows: list[dict], key: str) -> float:
    """RMSE over all molecules' conformers (each row's RMSE weighted by its conformer count)."""
    total = sum(r["conformers"] for r in rows)
    return math.sqrt(sum(r[key] ** 2 * r["conformers"] for r in rows) / total) if total else float("nan")


def _pooled(rows: list[dict], key: str) -> float:
    """RMSE over all scans' points (each row's RMSE weighted by its point count)."""
    weights = [r["held_out"] if "held_out" in key else r["points"] - r["held_out"] for r in rows]
    values = [(r[key], w) for r, w in zip(rows, weights) if w and math.isfinite(r[key])]
    total = sum(w for _, w in values)
    return math.sqrt(sum(v**2 * w for v, w in values) / total) if total else float("nan")

