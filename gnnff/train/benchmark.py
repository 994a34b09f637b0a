"""The OpenFF industry-benchmark protocol on QM-optimised conformers.

For every conformer: start from the QM geometry, minimise with the force field under
test (OpenMM Reference platform, ``LocalEnergyMinimizer.minimize(context, 5e-9, 1500)``),
then measure

- RMSD (A): all atoms, symmetry-equivalent atoms matched, after optimal overlay
  (RDKit ``GetBestRMS``) between the MM-minimised and the QM geometry;
- TFD: RDKit torsion fingerprint deviation between them;
- ddE (kcal/mol): with the lowest-QM-energy conformer of the molecule as reference,
  ``(E_MM,i - E_MM,ref) - (E_QM,i - E_QM,ref)`` at the MM-minimised geometries.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import openmm
import openmm.unit as unit
from rdkit import Chem
from rdkit.Chem import TorsionFingerprints, rdMolAlign

from gnnff.chem.molecule import prepare
from gnnff.chem.topology import build_topology
from gnnff.mm.export import to_openmm
from gnnff.sources.models import ParameterSource
from gnnff.train.data import molecule_key, qcarchive_groups
from gnnff.units import ANGSTROM_TO_NM, KJ_TO_KCAL, NM_TO_ANGSTROM

__all__ = ["BenchmarkMolecule", "ConformerResult", "read_benchmark_sdf", "run_protocol",
           "read_baseline_csv", "summarize", "bootstrap_interval", "paired_differences"]

MINIMIZER_TOLERANCE = 5e-9
MINIMIZER_ITERATIONS = 1500


@dataclass(frozen=True, eq=False)
class BenchmarkMolecule:
    """Conformers of one molecule: prepared ``mol`` (one conformer per QM record)."""

    key: str
    mol: Chem.Mol
    qm_energies: np.ndarray  # kcal/mol
    record_ids: list[str]


@dataclass(frozen=True)
class ConformerResult:
    record_id: str
    key: str
    rmsd: float
    tfd: float
    dde: float  # NaN for the reference conformer


def read_benchmark_sdf(path: str | os.PathLike, *, keys: set[str] | None = None,
                       limit: int | None = None) -> list[BenchmarkMolecule]:
    """Group the records of the QCArchive SDF by molecule and atom order, keeping QM energies
    and record ids (one molecule can appear twice, in two atom orders: two groups)."""
    out = []
    for records in qcarchive_groups(path, limit):
        mol = prepare(records[0], label=records[0].GetProp("SMILES QCArchive"))
        key = molecule_key(mol)
        if keys is not None and key not in keys:
            continue
        mol.RemoveAllConformers()
        for record in records:
            mol.AddConformer(Chem.Conformer(record.GetConformer()), assignId=True)
        out.append(BenchmarkMolecule(key, mol, np.array([float(r.GetProp("Energy QCArchive")) for r in records]),
                                     [r.GetProp("Record QCArchive") for r in records]))
    return out


def _minimise(system: openmm.System, positions_nm: np.ndarray) -> tuple[np.ndarray, float]:
    context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm)
    openmm.LocalEnergyMinimizer.minimize(context, MINIMIZER_TOLERANCE, MINIMIZER_ITERATIONS)
    state = context.getState(getEnergy=True, getPositions=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_TO_KCAL)


def _single(mol: Chem.Mol, positions_angstrom: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for i, xyz in enumerate(positions_angstrom):
        conformer.SetAtomPosition(i, xyz.tolist())
    out.AddConformer(conformer, assignId=True)
    return out


def run_protocol(source: ParameterSource, molecule: BenchmarkMolecule) -> list[ConformerResult]:
    """Minimise every conformer with ``source``'s parameters and measure RMSD, TFD, ddE."""
    topology = build_topology(molecule.mol)
    system = to_openmm(topology, source.parameters(molecule.mol, topology))
    return measure(molecule, [_minimise(system, c.GetPositions() * ANGSTROM_TO_NM)
                              for c in molecule.mol.GetConformers()])


def measure(molecule: BenchmarkMolecule, minimised: Sequence[tuple[np.ndarray, float]]) -> list[ConformerResult]:
    """RMSD, TFD and ddE of each conformer's minimised geometry (nm) and energy (kcal/mol),
    in conformer order, against the QM ones: the protocol's measurements for any minimiser."""
    mm_energies, rmsd, tfd = [], [], []
    for conformer, (mm_xyz, energy) in zip(molecule.mol.GetConformers(), minimised):
        mm_energies.append(energy)
        qm_mol, mm_mol = _single(molecule.mol, conformer.GetPositions()), _single(molecule.mol, mm_xyz * NM_TO_ANGSTROM)
        rmsd.append(rdMolAlign.GetBestRMS(mm_mol, qm_mol, maxMatches=10000))
        try:
            tfd.append(TorsionFingerprints.GetTFDBetweenMolecules(qm_mol, mm_mol))
        except (ValueError, ZeroDivisionError, RuntimeError, IndexError):  # RDKit finds no torsions
            tfd.append(float("nan"))
    ref = int(np.argmin(molecule.qm_energies))
    mm = np.asarray(mm_energies)
    dde = (mm - mm[ref]) - (molecule.qm_energies - molecule.qm_energies[ref])
    dde[ref] = np.nan
    return [ConformerResult(rid, molecule.key, float(r), float(t), float(d))
            for rid, r, t, d in zip(molecule.record_ids, rmsd, tfd, dde)]


def read_baseline_csv(path: str | os.PathLike) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Force field -> record id -> (RMSD, TFD, ddE) from the benchmark's own results."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    with opener(path, "rt") as handle:
        for row in csv.DictReader(handle):
            values = tuple(float(row[c]) if row[c] else float("nan") for c in ("RMSD", "TDF", "ddE"))
            out.setdefault(row["Force Field"], {})[row["Record ID"]] = values
    return out


def bootstrap_interval(values_by_molecule: Sequence[np.ndarray], statistic, n_boot: int = 1000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Statistic over all values and its 95% interval from resampling molecules."""
    groups = [np.asarray(v)[~np.isnan(v)] for v in values_by_molecule]
    groups = [g for g in groups if g.size]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = [statistic(np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))]))
            for _ in range(n_boot)]
    return float(statistic(np.concatenate(groups))), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def _rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def summarize(results: dict[str, Iterable[ConformerResult]]) -> list[dict]:
    """Per force field: median RMSD, median TFD, ddE RMSE (with intervals), means."""
    rows = []
    for name, items in results.items():
        by_mol: dict[str, list[ConformerResult]] = {}
        for r in items:
            by_mol.setdefault(r.key, []).append(r)
        groups = list(by_mol.values())
        metric = {m: [np.array([getattr(r, m) for r in g]) for g in groups] for m in ("rmsd", "tfd", "dde")}
        row = {"force_field": name, "molecules": len(groups), "conformers": sum(len(g) for g in groups)}
        for label, m, stat in (("rmsd_median", "rmsd", np.median), ("tfd_median", "tfd", np.median),
                               ("dde_rmse", "dde", _rmse)):
            value, lo, hi = bootstrap_interval(metric[m], stat)
            row.update({label: value, f"{label}_lo": lo, f"{label}_hi": hi})
        row["rmsd_mean"] = float(np.nanmean(np.concatenate(metric["rmsd"])))
        row["tfd_mean"] = float(np.nanmean(np.concatenate(metric["tfd"])))
        row["dde_mae"] = float(np.nanmean(np.abs(np.concatenate(metric["dde"]))))
        rows.append(row)
    return rows


def paired_differences(results: dict[str, Iterable[ConformerResult]], base: str, other: str,
                       n_boot: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """``other`` minus ``base`` on the molecules both measured: median RMSD, median TFD and
    ddE RMSE, each with the 95 % interval of the difference when the same molecules are
    resampled for both (paired: molecule-to-molecule spread cancels, unlike comparing two
    separate intervals). Positive: ``other`` is worse."""
    def grouped(name):
        out: dict[str, dict[str, ConformerResult]] = {}
        for r in results[name]:
            out.setdefault(r.key, {})[r.record_id] = r
        return out

    a, b = grouped(base), grouped(other)
    keys = sorted(set(a) & set(b))
    pairs = [[(a[k][rid], b[k][rid]) for rid in sorted(set(a[k]) & set(b[k]))] for k in keys]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(pairs), len(pairs)) for _ in range(n_boot)]
    out = {}
    for label, m, stat in (("rmsd_median", "rmsd", np.nanmedian), ("tfd_median", "tfd", np.nanmedian),
                           ("dde_rmse", "dde", _nan_rmse)):
        values = [(np.array([getattr(x, m) for x, _ in g]), np.array([getattr(y, m) for _, y in g])) for g in pairs]

        def difference(idx):
            return float(stat(np.concatenate([values[i][1] for i in idx]))
                         - stat(np.concatenate([values[i][0] for i in idx])))

        boot = [difference(idx) for idx in draws]
        out[label] = (difference(range(len(pairs))), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    return out


def _nan_rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean(x**2)))


def plot_cumulative(results: dict[str, list[ConformerResult]], path: Path) -> None:
    """Cumulative distributions of RMSD, TFD and |ddE| per force field (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (attr, label) in zip(axes, (("rmsd", "RMSD (A)"), ("tfd", "TFD"), ("dde", "|ddE| (kcal/mol)"))):
        for name, items in results.items():
            values = np.sort(np.abs([getattr(r, attr) for r in items]))
            values = values[~np.isnan(values)]
            ax.plot(values, np.arange(1, len(values) + 1) / max(len(values), 1), label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("fraction of conformers")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
