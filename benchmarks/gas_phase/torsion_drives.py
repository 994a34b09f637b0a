"""Held-out torsion drives: force fields' MM profiles against QM-level reference profiles.

    python benchmarks/gas_phase/torsion_drives.py --force-field gnnff-v1 --force-field sage \\
        [--baseline sage] [--drives benchmarks/data/torsion-drives-v1] [--workers 1] [-o runs/torsion-drives]
    python benchmarks/gas_phase/torsion_drives.py --export-items drives.json   # for a peer's own tools

The drives (``benchmarks/data/torsion-drives-v1/*.json.gz``, selected by
``make_torsion_drives.py``, labelled by ``label_torsion_drives.py``) hold, per grid point
of one dihedral, the reference geometry (constrained optimisation with ANI-1ccx or ANI-2x)
and the reference energy at the drive's level (ANI-1ccx, ANI-2x, or B3LYP-D3BJ/DZVP single
points on the ANI-2x geometries). For each force field (a gnnff model name or checkpoint
path, ``sage``, or any other name of :func:`gnnff.sources.models.get_model`; or ``systems:DIR``,
a force field gnnff does not run, whose tools wrote one OpenMM System per drive as ``DIR/<drive
id>.xml``, labelled by DIR's name: see :class:`gnnff.train.benchmark.SystemFolder`,
``--export-items`` and ``benchmarks/peers/garnet_systems.py``), each drive:

1. parameters for the molecule (its conformer: the reference geometry of lowest energy);
2. the MM profile (:func:`gnnff.train.scan.mm_profile`): every reference geometry
   minimised with the force field, the dihedral restrained to its grid value;
3. both profiles mean-aligned (each minus its own mean over the grid), RMSE in kcal/mol.

Prints per force field the mean RMSE over drives, the median, a bootstrap 95 % interval
(resampling drives), and against ``--baseline`` the paired mean difference and the ratio of
mean RMSEs, each with a paired bootstrap 95 % interval; the same by level. Writes
``OUT/per_drive.csv``, ``OUT/summary.json`` and ``OUT/torsion_drives.png``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdkit import Chem

ROOT = Path(__file__).resolve().parents[2]
DRIVES = ROOT / "benchmarks" / "data" / "torsion-drives-v1"
KJ_TO_KCAL = 1.0 / 4.184
BOOTSTRAP = 10_000


@dataclass(frozen=True)
class Drive:
    """One labelled drive. ``positions_nm`` (n_points, n_atoms, 3) float32; energies kJ/mol.
    ``geometry_energies``: the geometry labeler's energies when the reference level is another
    (B3LYP-D3BJ single points on ANI-2x geometries), else None."""

    id: str
    mapped_smiles: str
    torsion: tuple[int, int, int, int]
    level: str
    target_deg: np.ndarray
    dihedral_deg: np.ndarray
    energies: np.ndarray
    positions_nm: np.ndarray
    geometry_energies: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def molecule_of(mapped_smiles: str) -> Chem.Mol:
    """The RDKit molecule of a fully mapped SMILES, atoms in map order (map n -> index n-1), maps cleared."""
    params = Chem.SmilesParserParams()
    params.removeHs = False
    mol = Chem.MolFromSmiles(mapped_smiles, params)
    if mol is None:
        raise ValueError(f"unreadable SMILES {mapped_smiles}")
    order = sorted(range(mol.GetNumAtoms()), key=lambda a: mol.GetAtomWithIdx(a).GetAtomMapNum())
    mol = Chem.RenumberAtoms(mol, order)
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return mol


def write_drive(path: Path, drive: Drive) -> None:
    """``drive`` as gzipped JSON, atomically (positions rounded to 1e-6 nm, about float32's precision)."""
    from gnnff.files import atomic_write

    document = {"id": drive.id, "mapped_smiles": drive.mapped_smiles, "torsion": list(drive.torsion),
                "level": drive.level, "units": {"energy": "kJ/mol", "positions": "nm", "angles": "degrees"},
                "target_deg": np.asarray(drive.target_deg, dtype=float).tolist(),
                "dihedral_deg": np.round(np.asarray(drive.dihedral_deg, dtype=float), 4).tolist(),
                "energy_kj_mol": np.asarray(drive.energies, dtype=float).tolist(),
                "geometry_energy_kj_mol": (None if drive.geometry_energies is None
                                           else np.asarray(drive.geometry_energies, dtype=float).tolist()),
                "positions_nm": np.round(np.asarray(drive.positions_nm, dtype=np.float64), 6).tolist(),
                "meta": drive.meta}
    data = json.dumps(document, separators=(",", ":")).encode()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(gzip.compress(data, mtime=0)))


def read_drive(path: Path) -> Drive:
    """A drive written by :func:`write_drive`."""
    with gzip.open(path, "rt") as handle:
        d = json.load(handle)
    geometry = d.get("geometry_energy_kj_mol")
    return Drive(d["id"], d["mapped_smiles"], tuple(d["torsion"]), d["level"], np.array(d["target_deg"]),
                 np.array(d["dihedral_deg"]), np.array(d["energy_kj_mol"]),
                 np.array(d["positions_nm"], dtype=np.float32),
                 None if geometry is None else np.array(geometry), d.get("meta", {}))


def read_drives(folder: Path) -> list[Drive]:
    """Every drive of ``folder``, sorted by id."""
    return sorted((read_drive(p) for p in folder.glob("*.json.gz")), key=lambda d: d.id)


def aligned_rmse(reference: np.ndarray, other: np.ndarray) -> float:
    """RMSE of two profiles after subtracting each one's own mean (same units as the inputs)."""
    a = np.asarray(reference, dtype=float)
    b = np.asarray(other, dtype=float)
    return float(np.sqrt(np.mean(((a - a.mean()) - (b - b.mean())) ** 2)))


def source_of(name: str):
    """The parameter source of a force-field name, or the SystemFolder of ``systems:DIR``."""
    from gnnff.sources.models import get_model
    from gnnff.train.benchmark import system_folder

    return system_folder(name) or get_model(name)


def label_of(name: str) -> str:
    """A force field's label in the tables: DIR's name for ``systems:DIR``, else the name itself."""
    from gnnff.train.benchmark import system_folder

    folder = system_folder(name)
    return name if folder is None else folder.name


def mm_energies(source, drive: Drive) -> np.ndarray:
    """The MM profile (kJ/mol) of ``drive`` with a parameter source (or, for a
    :class:`gnnff.train.benchmark.SystemFolder`, its System of ``drive.id``): each reference
    geometry minimised with the dihedral restrained to its grid value."""
    from gnnff.api import assign_parameters
    from gnnff.train.benchmark import SystemFolder
    from gnnff.train.scan import ScanPoint, mm_profile

    mol = molecule_of(drive.mapped_smiles)
    lowest = drive.positions_nm[int(np.argmin(drive.energies))].astype(np.float64)
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for a, xyz in enumerate(lowest * 10.0):  # nm -> angstrom
        conformer.SetAtomPosition(a, xyz.tolist())
    mol.AddConformer(conformer, assignId=True)
    if isinstance(source, SystemFolder):
        system = source.system(drive.id, mol)
    else:
        system = assign_parameters(mol, model=source, name=drive.id).to_openmm()
    points = [ScanPoint(float(t), float(d), float(e), x.astype(np.float64))
              for t, d, e, x in zip(drive.target_deg, drive.dihedral_deg, drive.energies, drive.positions_nm)]
    return np.array([p.energy for p in mm_profile(system, points, drive.torsion)])


def bootstrap_mean(values: np.ndarray, seed: int = 0, n: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``values`` (resampled with replacement)."""
    values = np.asarray(values, dtype=float)
    index = np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))
    means = values[index].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, seed: int = 0, n: int = BOOTSTRAP) -> dict:
    """Paired comparison of per-drive values ``a`` against baseline ``b`` (same drives, same
    order): mean difference a - b and ratio mean(a) / mean(b), each with a 95 % percentile
    interval from resampling drives (the same resample for both)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    index = np.random.default_rng(seed).integers(0, len(a), size=(n, len(a)))
    ma, mb = a[index].mean(axis=1), b[index].mean(axis=1)
    diff, ratio = ma - mb, ma / mb
    return {"difference": float(a.mean() - b.mean()),
            "difference_ci": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
            "ratio": float(a.mean() / b.mean()),
            "ratio_ci": [float(np.percentile(ratio, 2.5)), float(np.percentile(ratio, 97.5))]}


def _one(args: tuple) -> tuple[str, np.ndarray | str]:
    name, drive = args
    from gnnff.errors import GnnffError

    try:
        return drive.id, mm_energies(source_of(name), drive)
    except GnnffError as err:
        return drive.id, f"{type(err).__name__}: {err}"


def profiles(name: str, drives: list[Drive], workers: int = 1) -> dict[str, np.ndarray | str]:
    """MM profiles (kJ/mol) of every drive with force field ``name``, by drive id; a drive whose
    parametrisation failed maps to its error message."""
    jobs = [(name, d) for d in drives]
    if workers <= 1:
        return dict(map(_one, jobs))
    from multiprocessing import get_context

    with get_context("spawn").Pool(workers) as pool:
        return dict(pool.map(_one, jobs, chunksize=1))


def summarise(rmse: dict[str, dict[str, float]], levels: dict[str, str], baseline: str) -> dict:
    """Per force field: mean, median, 95 % interval of the mean; paired against ``baseline``
    over the drives both covered; the same per level ("all" first)."""
    out = {}
    groups = {"all": sorted(levels)} | {lv: sorted(i for i in levels if levels[i] == lv)
                                        for lv in sorted(set(levels.values()))}
    for ff, values in rmse.items():
        out[ff] = {}
        for group, ids in groups.items():
            ids = [i for i in ids if i in values]
            if not ids:
                continue
            v = np.array([values[i] for i in ids])
            row = {"drives": len(ids), "mean": float(v.mean()), "median": float(np.median(v)),
                   "mean_ci": list(bootstrap_mean(v))}
            shared = [i for i in ids if i in rmse.get(baseline, {})]
            if ff != baseline and len(shared) > 1:
                row["vs_baseline"] = {"drives": len(shared), **paired_bootstrap(
                    np.array([values[i] for i in shared]), np.array([rmse[baseline][i] for i in shared]))}
            out[ff][group] = row
    return out


def print_table(summary: dict, baseline: str) -> None:
    print(f"{'force field':<28}{'level':<26}{'n':>4}{'mean':>7}{'median':>8}  {'95% CI':<14}"
          f"  {'diff vs ' + baseline:<26}{'ratio':<20}")
    for ff, groups in summary.items():
        for group, r in groups.items():
            line = (f"{ff[:27]:<28}{group[:25]:<26}{r['drives']:>4}{r['mean']:>7.3f}{r['median']:>8.3f}  "
                    f"[{r['mean_ci'][0]:.2f}, {r['mean_ci'][1]:.2f}]")
            if "vs_baseline" in r:
                p = r["vs_baseline"]
                line += (f"  {p['difference']:+.3f} [{p['difference_ci'][0]:+.2f}, {p['difference_ci'][1]:+.2f}]"
                         f"   {p['ratio']:.2f} [{p['ratio_ci'][0]:.2f}, {p['ratio_ci'][1]:.2f}]")
            print(line)


def plot(path: Path, drives: list[Drive], mm: dict[str, dict[str, np.ndarray]], rmse: dict[str, dict[str, float]],
         baseline: str) -> None:
    """Profile grid (every drive: reference and each force field, mean-aligned, kcal/mol) and
    per-drive RMSE of each force field against the baseline's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gnnff.files import atomic_write

    columns = 8
    rows = -(-len(drives) // columns) + 1
    fig = plt.figure(figsize=(2.2 * columns, 1.9 * rows))
    for k, d in enumerate(drives):
        ax = fig.add_subplot(rows, columns, k + 1)
        ref = d.energies * KJ_TO_KCAL
        ax.plot(d.target_deg, ref - ref.mean(), "k-", lw=1.5, label=d.level)
        for ff, by_id in mm.items():
            if isinstance(by_id.get(d.id), np.ndarray):
                e = by_id[d.id] * KJ_TO_KCAL
                ax.plot(d.target_deg, e - e.mean(), lw=0.9, label=ff)
        ax.set_title(f"{d.id} {d.level.split('//')[0]}", fontsize=7)
        ax.tick_params(labelsize=6)
        if k == 0:
            ax.legend(fontsize=5)
    ax = fig.add_subplot(rows, 4, 4 * rows - 3)
    for ff in rmse:
        if ff == baseline or baseline not in rmse:
            continue
        ids = [i for i in rmse[ff] if i in rmse[baseline]]
        ax.scatter([rmse[baseline][i] for i in ids], [rmse[ff][i] for i in ids], s=10, label=ff)
    top = max((v for r in rmse.values() for v in r.values()), default=1.0)
    ax.plot([0, top], [0, top], "k:", lw=0.8)
    ax.set_xlabel(f"{baseline} RMSE (kcal/mol)", fontsize=8)
    ax.set_ylabel("RMSE (kcal/mol)", fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def labeler_gap(drives: list[Drive]) -> dict | None:
    """Mean-aligned RMSE (kcal/mol) of the geometry labeler's profile against the reference
    level's, over the drives that hold both (the DFT subset: how far ANI-2x is from DFT)."""
    pairs = {d.id: aligned_rmse(d.energies, d.geometry_energies) * KJ_TO_KCAL
             for d in drives if d.geometry_energies is not None}
    if not pairs:
        return None
    v = np.array(list(pairs.values()))
    return {"drives": len(v), "mean": float(v.mean()), "median": float(np.median(v)),
            "mean_ci": list(bootstrap_mean(v)), "per_drive": pairs}


def run(force_fields: list[str], drives: list[Drive], baseline: str, output: Path, workers: int = 1) -> dict:
    """The benchmark: per-drive RMSEs, summary, files in ``output``. Returns the summary document.
    Force fields are labelled by :func:`label_of`; ``baseline`` is a name or a label."""
    from gnnff.errors import ModelError
    from gnnff.files import atomic_write_csv, atomic_write_text

    labels = {name: label_of(name) for name in force_fields}
    baseline = next((label for name, label in labels.items() if baseline in (name, label)), None) or baseline
    if baseline not in labels.values():
        labels[baseline] = label_of(baseline)
        baseline = labels[baseline]
    if len(set(labels.values())) < len(labels):
        raise ModelError(f"two force fields share a label ({', '.join(f'{n} -> {lb}' for n, lb in labels.items())}); "
                         "give each systems:DIR folder its own name")
    mm, rmse, errors, seconds = {}, {}, {}, {}
    for name, ff in labels.items():
        start = time.perf_counter()
        mm[ff] = profiles(name, drives, workers)
        seconds[ff] = time.perf_counter() - start
        rmse[ff] = {d.id: aligned_rmse(d.energies, mm[ff][d.id]) * KJ_TO_KCAL
                    for d in drives if isinstance(mm[ff][d.id], np.ndarray)}
        errors[ff] = {i: e for i, e in mm[ff].items() if isinstance(e, str)}
        print(f"{ff}: {len(rmse[ff])} drives in {seconds[ff]:.0f} s" +
              (f"; failed: {errors[ff]}" if errors[ff] else ""), flush=True)
    levels = {d.id: d.level for d in drives}
    summary = summarise(rmse, levels, baseline)
    print_table(summary, baseline)
    gap = labeler_gap(drives)
    if gap is not None:
        print(f"geometry labeler vs reference level on {gap['drives']} drives (e.g. ANI-2x vs B3LYP-D3BJ): "
              f"mean RMSE {gap['mean']:.3f} kcal/mol [{gap['mean_ci'][0]:.2f}, {gap['mean_ci'][1]:.2f}]")
    output.mkdir(parents=True, exist_ok=True)
    rows = [{"drive": d.id, "level": d.level, "smiles": Chem.MolToSmiles(Chem.RemoveHs(molecule_of(d.mapped_smiles))),
             "bond_class": d.meta.get("bond_class", ""), **{f"rmse_{ff}": rmse[ff].get(d.id, "") for ff in rmse}}
            for d in drives]
    atomic_write_csv(output / "per_drive.csv", rows)
    document = {"baseline": baseline, "force_fields": list(rmse), "drives": len(drives), "summary": summary,
                "per_drive_rmse_kcal_mol": rmse, "geometry_labeler_vs_level": gap, "errors": errors, "seconds": seconds,
                "protocol": "restrained MM minimisation per reference geometry (gnnff.train.scan.mm_profile); "
                            "profiles mean-aligned; RMSE per drive in kcal/mol; paired bootstrap over drives "
                            f"({BOOTSTRAP} resamples, 95 % percentile intervals)"}
    atomic_write_text(output / "summary.json", json.dumps(document, indent=1) + "\n")
    plot(output / "torsion_drives.png", drives, mm, rmse, baseline)
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force-field", action="append", metavar="NAME_OR_PATH",
                        help="gnnff model name or .pt path, sage, ..., or systems:DIR (precomputed Systems, "
                             "DIR/<drive id>.xml, labelled by DIR's name) (repeatable)")
    parser.add_argument("--baseline", default="sage", help="force field (name or label) the others are paired against")
    parser.add_argument("--export-items", type=Path, metavar="FILE",
                        help="write the selected drives' ids and mapped SMILES as JSON (the input of a peer force "
                             "field's script, e.g. benchmarks/peers/garnet_systems.py) and stop")
    parser.add_argument("--drives", type=Path, default=DRIVES, help="folder of labelled drives (*.json.gz)")
    parser.add_argument("--level", action="append", help="only drives of this level (repeatable)")
    parser.add_argument("--limit", type=int, default=0, help="first N drives only (0: all)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "runs" / "torsion-drives")
    args = parser.parse_args(argv)
    drives = read_drives(args.drives)
    if args.level:
        drives = [d for d in drives if d.level in args.level]
    if args.limit:
        drives = drives[: args.limit]
    if not drives:
        print(f"no labelled drives in {args.drives}", file=sys.stderr)
        return 1
    if args.export_items:
        from gnnff.train.benchmark import write_items

        write_items(args.export_items, [(d.id, molecule_of(d.mapped_smiles)) for d in drives])
        print(f"{len(drives)} drives' ids and mapped SMILES in {args.export_items}")
        return 0
    if not args.force_field:
        parser.error("give at least one --force-field (or --export-items FILE)")
    from gnnff.errors import GnnffError

    try:
        run(args.force_field, drives, args.baseline, args.output, args.workers)
    except GnnffError as err:
        print(f"torsion_drives.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
