"""Label the held-out torsion drives of ``benchmarks/data/torsion-drives-v1.json``.

    nice -n 19 python benchmarks/gas_phase/label_torsion_drives.py --stage geometry   # every drive's geometries
    nice -n 19 python benchmarks/gas_phase/label_torsion_drives.py --stage dft        # DFT single points

Geometries: from an RDKit ETKDG conformer (seed 42), a 15-degree drive of the selected
dihedral (:func:`gnnff.train.scan.drive`: geomeTRIC constrained optimisation at every grid
point, forward and backward passes, the lower energy kept) with the drive's geometry
labeler (ANI-1ccx for H C N O molecules, ANI-2x otherwise and for the DFT subset).
Energies: the geometry labeler's, or for the DFT subset B3LYP-D3BJ/DZVP single points on
the ANI-2x geometries (level ``B3LYP-D3BJ/DZVP//ANI-2x``) every ``--dft-step`` degrees (30 by
default: 12 single points per drive, what 2 shared cores afford), the ANI-2x energies of
the same points kept beside them.

Resumable: one output file per drive in ``benchmarks/data/torsion-drives-v1/`` (written
atomically, skipped when present); DFT drives keep their ANI-2x geometries and each
finished single point in ``--work`` until complete. Progress lines go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torsion_drives import DRIVES, Drive, molecule_of, read_drive, write_drive  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SELECTION = ROOT / "benchmarks" / "data" / "torsion-drives-v1.json"
WORK = ROOT / "runs" / "torsion-drives-v1-work"
SEED = 42


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_conformer(mol: Chem.Mol) -> np.ndarray:
    """ETKDG positions (nm) of ``mol``, seed :data:`SEED`."""
    params = AllChem.ETKDGv3()
    params.randomSeed = SEED
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError("ETKDG could not embed the molecule")
    return mol.GetConformer().GetPositions() * 0.1  # angstrom -> nm


def geometry_drive(entry: dict, step: float) -> Drive:
    """The drive of ``entry`` with its geometry labeler: positions and that labeler's energies."""
    from gnnff.threads import serial_numerics
    from gnnff.train.labelers import get_labeler
    from gnnff.train.scan import OPTIMISER, Atoms, drive, labeler_energy, moving_atoms

    mol = molecule_of(entry["mapped_smiles"])
    torsion = tuple(entry["torsion"])
    labeler = get_labeler(entry["geometry_labeler"])
    energy = labeler_energy(labeler, np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), 0)
    done = [0]
    total = 2 * round(360 / step) - 1

    def progress(n: int) -> None:
        done[0] += n
        if done[0] % 10 == 0 or done[0] == total:
            log(f"{entry['id']} geometry {done[0]}/{total} optimisations")

    start, cpu = time.perf_counter(), time.process_time()
    with serial_numerics():
        points = drive(energy, Atoms.of(mol), start_conformer(Chem.Mol(mol)), torsion, moving_atoms(mol, torsion),
                       step=step, progress=progress)
    meta = {k: entry[k] for k in ("source", "name", "bond_class", "group", "geometry_labeler", "energy_labeler")}
    meta.update(geometry_method=labeler.method, optimiser=OPTIMISER, start="RDKit ETKDGv3, seed 42",
                step_deg=step, geometry_seconds=round(time.perf_counter() - start, 1),
                geometry_cpu_seconds=round(time.process_time() - cpu, 1))
    level = "ANI-1ccx" if entry["geometry_labeler"] == "ani-1ccx" else "ANI-2x"
    return Drive(entry["id"], entry["mapped_smiles"], torsion, level, np.array([p.target_deg for p in points]),
                 np.array([p.dihedral_deg for p in points]), np.array([p.energy for p in points]),
                 np.array([p.positions for p in points], dtype=np.float32), None, meta)


def dft_drive(geometry: Drive, entry: dict, step: float, work: Path) -> Drive:
    """B3LYP-D3BJ/DZVP single points on the points of ``geometry`` every ``step`` degrees; each
    finished point is appended to ``work/ID.dft.jsonl`` and not recomputed."""
    from gnnff.train.labelers import get_labeler

    keep = np.flatnonzero(np.isclose(np.mod(geometry.target_deg, step), 0.0)
                          | np.isclose(np.mod(geometry.target_deg, step), step))
    saved = work / f"{entry['id']}.dft.jsonl"
    energies = {}
    if saved.is_file():
        energies = {r["index"]: r["energy_kj_mol"] for r in map(json.loads, saved.read_text().splitlines())}
    todo = [int(i) for i in keep if int(i) not in energies]
    labeler = get_labeler("b3lyp-d3bj")
    mol = molecule_of(entry["mapped_smiles"])
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    start, cpu = time.perf_counter(), time.process_time()

    def done(k: int, energy: float) -> None:
        with open(saved, "a") as handle:
            handle.write(json.dumps({"index": todo[k], "energy_kj_mol": energy}) + "\n")
        energies[todo[k]] = energy
        log(f"{entry['id']} dft {len(energies)}/{len(keep)} points ({time.perf_counter() - start:.0f} s, "
            f"{time.process_time() - cpu:.0f} s CPU this run)")

    if todo:
        labeler.energies(z, geometry.positions_nm[todo].astype(np.float64), 0, done=done)
    meta = dict(geometry.meta, energy_method=labeler.method, dft_step_deg=step,
                dft_seconds_last_run=round(time.perf_counter() - start, 1))
    return Drive(entry["id"], entry["mapped_smiles"], geometry.torsion, entry["level"], geometry.target_deg[keep],
                 geometry.dihedral_deg[keep], np.array([energies[int(i)] for i in keep]), geometry.positions_nm[keep],
                 geometry.energies[keep], meta)


def label(entries: list[dict], stage: str, output: Path, work: Path, step: float, dft_step: float) -> list[str]:
    """Run ``stage`` on every entry whose output is missing; returns the ids still unfinished."""
    from gnnff.errors import GnnffError

    unfinished = []
    for entry in entries:
        final = output / f"{entry['id']}.json.gz"
        geometry_file = work / f"{entry['id']}.geometry.json.gz" if entry["group"] == "dft" else final
        if final.is_file():
            continue
        try:
            if stage == "geometry" and not geometry_file.is_file():
                log(f"{entry['id']} start {entry['geometry_labeler']} {entry['smiles']} torsion {entry['torsion']}")
                write_drive(geometry_file, geometry_drive(entry, step))
                log(f"{entry['id']} geometry written")
            elif stage == "dft" and entry["group"] == "dft":
                if not geometry_file.is_file():
                    unfinished.append(entry["id"])
                    continue
                write_drive(final, dft_drive(read_drive(geometry_file), entry, dft_step, work))
                log(f"{entry['id']} dft written")
        except (GnnffError, RuntimeError) as err:
            log(f"{entry['id']} FAILED: {type(err).__name__}: {err}")
            unfinished.append(entry["id"])
    return unfinished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("geometry", "dft"), required=True)
    parser.add_argument("--only", nargs="*", help="drive ids (default: all)")
    parser.add_argument("--step", type=float, default=15.0, help="grid of the geometry drives (degrees)")
    parser.add_argument("--dft-step", type=float, default=30.0, help="grid of the DFT single points (degrees)")
    parser.add_argument("--wait", action="store_true", help="dft stage: poll until every geometry exists")
    parser.add_argument("--selection", type=Path, default=SELECTION)
    parser.add_argument("-o", "--output", type=Path, default=DRIVES)
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args(argv)
    entries = json.loads(args.selection.read_text())["drives"]
    if args.only:
        entries = [e for e in entries if e["id"] in args.only]
    # the DFT subset's geometries first (its single points wait for them), then small molecules first
    entries = sorted(entries, key=lambda e: (e["group"] != "dft", e["heavy_atoms"], e["id"]))
    args.output.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    while True:
        unfinished = label(entries, args.stage, args.output, args.work, args.step, args.dft_step)
        if not (args.wait and unfinished):
            break
        time.sleep(60)
    log(f"stage {args.stage} finished; unfinished: {unfinished or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
