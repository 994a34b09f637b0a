"""The OpenFF industry-benchmark protocol on QM-optimised conformers.

For every conformer: start from the QM geometry, minimise with the force field under
test (OpenMM Reference platform, ``LocalEnergyMinimizer.minimize(context, 5e-9, 1500)``),
then measure

- RMSD (A): all atoms, symmetry-equivalent atoms matched, after optimal overlay
  (RDKit ``GetBestRMS``) between the MM-minimised and the QM geometry;
- TFD: RDKit torsion fingerprint deviation between them;
- ddE (kcal/mol): with the lowest-QM-energy conformer of the molecule as reference,
  ``(E_MM,i - E_MM,ref) - (E_QM,i - E_QM,ref)`` at the MM-minimised geometries.

A force field gnnff cannot run itself (a peer such as Garnet, in a venv of its own) takes
part through :class:`SystemFolder`: its own tools write one OpenMM System XML per benchmark
item into a folder (``systems:DIR`` on a benchmark's command line), from the items that
:func:`write_items` exported (id and mapped SMILES, atoms in the benchmark's order).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import openmm
import openmm.unit as unit
from rdkit import Chem
from rdkit.Chem import TorsionFingerprints, rdMolAlign

from gnnff.chem.molecule import mapped_smiles, prepare
from gnnff.chem.topology import build_topology
from gnnff.errors import ParametrizationError, first_line
from gnnff.files import atomic_write_text
from gnnff.mm.export import to_openmm
from gnnff.sources.models import ParameterSource
from gnnff.train.data import molecule_key, qcarchive_groups
from gnnff.units import ANGSTROM_TO_NM, KJ_TO_KCAL, NM_TO_ANGSTROM

__all__ = ["BenchmarkMolecule", "ConformerResult", "SystemFolder", "bootstrap_interval", "paired_differences",
           "read_baseline_csv", "read_benchmark_sdf", "run_protocol", "summarize", "system_folder", "write_items"]

MINIMIZER_TOLERANCE = 5e-9
MINIMIZER_ITERATIONS = 1500


@dataclass(frozen=True, eq=False)
class BenchmarkMolecule:
    """Conformers of one molecule: prepared ``mol`` (one conformer per QM record)."""

    key: str
    mol: Chem.Mol
    qm_energies: np.ndarray  # kcal/mol
    record_ids: list[str]

    @property
    def item_id(self) -> str:
        """The molecule's id among the benchmark's items: its first QCArchive record id (unique
        per group and safe in a file name, unlike ``key``, which one molecule in two atom
        orders shares)."""
        return self.record_ids[0]


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


def run_protocol(source: ParameterSource | SystemFolder, molecule: BenchmarkMolecule) -> list[ConformerResult]:
    """Minimise every conformer with ``source``'s parameters (or, for a :class:`SystemFolder`,
    its System of ``molecule.item_id``) and measure RMSD, TFD, ddE."""
    if isinstance(source, SystemFolder):
        system = source.system(molecule.item_id, molecule.mol)
    else:
        topology = build_topology(molecule.mol)
        system = to_openmm(topology, source.parameters(molecule.mol, topology))
    return measure(molecule, [_minimise(system, c.GetPositions() * ANGSTROM_TO_NM)
                              for c in molecule.mol.GetConformers()])


SYSTEMS_PREFIX = "systems:"


@dataclass(frozen=True)
class SystemFolder:
    """A force field given as precomputed OpenMM Systems: ``folder/<id>.xml`` per benchmark
    item, particles in the item's atom order (the order of the mapped SMILES that
    :func:`write_items` exported). ``folder/errors.json`` (id -> one line), when there, says
    why the tool that wrote the folder made no System for an id. Labelled by the folder's name."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    def system(self, item_id: str, mol: Chem.Mol) -> openmm.System:
        """The System of ``item_id``, checked against ``mol`` (particle count, masses, bonds).

        Raises
        ------
        ParametrizationError
            No XML for ``item_id`` (with the tool's own error when ``errors.json`` has one), an
            unreadable XML, or a System whose atoms are not ``mol``'s in ``mol``'s order.
        """
        path = self.folder / f"{item_id}.xml"
        if not path.is_file():
            reason = self._recorded_error(item_id)
            raise ParametrizationError(
                f"{item_id}: no System {path}" + (f"; its maker failed: {reason}" if reason else
                "; export the items (--export-items FILE) and run the force field's own script on them "
                "(e.g. benchmarks/peers/garnet_systems.py FILE -o DIR)"))
        try:
            system = openmm.XmlSerializer.deserialize(path.read_text(encoding="utf-8"))
        except openmm.OpenMMException as err:
            raise ParametrizationError(f"{item_id}: {path} is not an OpenMM System XML ({first_line(err)}); "
                                       "write it again") from None
        check_system_atoms(system, mol, f"{item_id} ({path})")
        return system

    def _recorded_error(self, item_id: str) -> str | None:
        errors = self.folder / "errors.json"
        if not errors.is_file():
            return None
        return json.loads(errors.read_text(encoding="utf-8")).get(item_id)


def system_folder(name: str) -> SystemFolder | None:
    """The :class:`SystemFolder` of a force-field name ``systems:DIR``; None for any other
    name. Raises ParametrizationError when DIR is not a folder."""
    if not name.startswith(SYSTEMS_PREFIX):
        return None
    folder = Path(name[len(SYSTEMS_PREFIX):]).expanduser()
    if not folder.is_dir():
        raise ParametrizationError(f"{name}: {folder} is not a folder; give systems:DIR with DIR holding "
                                   "one OpenMM System XML per benchmark item (<id>.xml)")
    return SystemFolder(folder.resolve())


def check_system_atoms(system: openmm.System, mol: Chem.Mol, label: str) -> None:
    """Raise ParametrizationError unless ``system``'s particles are ``mol``'s atoms in
    ``mol``'s order: the same count, each mass within 0.05 Da of the atom's element, and
    the HarmonicBondForce bonds (with constraints) exactly ``mol``'s bonds."""
    n = mol.GetNumAtoms()
    if system.getNumParticles() != n:
        raise ParametrizationError(f"{label}: {system.getNumParticles()} particles for a molecule of {n} atoms; "
                                   "the System was made for another molecule")
    for atom in mol.GetAtoms():
        mass = system.getParticleMass(atom.GetIdx()).value_in_unit(unit.dalton)
        if abs(mass - atom.GetMass()) > 0.05:
            raise ParametrizationError(
                f"{label}: particle {atom.GetIdx()} has mass {mass:.3f} Da but atom {atom.GetIdx()} is "
                f"{atom.GetSymbol()}; the System's atom order is not the exported mapped SMILES' order")
    wanted = {frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in mol.GetBonds()}
    found = {frozenset(system.getConstraintParameters(i)[:2]) for i in range(system.getNumConstraints())}
    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            found |= {frozenset(force.getBondParameters(i)[:2]) for i in range(force.getNumBonds())}
    if found != wanted:
        odd = sorted(tuple(sorted(b)) for b in found ^ wanted)[:3]
        raise ParametrizationError(f"{label}: the System's bonds differ from the molecule's (e.g. {odd}); "
                                   "the System's atom order is not the exported mapped SMILES' order")


def write_items(path: str | os.PathLike, items: Sequence[tuple[str, Chem.Mol]]) -> Path:
    """``[{"id": id, "mapped_smiles": ...}, ...]`` as JSON, atomically: each molecule with every
    atom mapped to its index + 1 (OpenFF's mapped SMILES), the input of another force field's
    script that writes a :class:`SystemFolder`."""
    rows = [json.dumps({"id": item_id, "mapped_smiles": mapped_smiles(mol)}) for item_id, mol in items]
    return atomic_write_text(path, "[\n" + ",\n".join(rows) + "\n]\n")


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
