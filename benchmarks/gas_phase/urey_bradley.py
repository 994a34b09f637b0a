"""Does the opt-in Urey-Bradley term pay? Accuracy gained against evaluation cost.

    bash recipes/urey-bradley/run.sh          # the two fine-tunes + their industry benchmarks
    python benchmarks/gas_phase/urey_bradley.py [--runs runs/urey-bradley] [--molecules 100] [--seconds 1]

Reads the industry-benchmark summaries of the two arms of ``recipes/urey-bradley/`` (the
same fine-tune of gnnff-industry-v0 without and with the term, same data, split, epochs
and seed; 487 held-out test molecules) and puts them side by side with their difference;
then, on ``--molecules`` of the test molecules, the cost of the term: forces in each
exported System (terms) and OpenMM energy + force evaluations per second on the CPU
platform (one thread) and the Reference platform, summed over the molecules, with and
without it. Prints tables; nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import openmm

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.train.benchmark import read_benchmark_sdf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import INDUSTRY_SDF, ROOT  # noqa: E402

ARMS = ("plain", "ub")


def _summary(path: Path) -> dict[str, float]:
    with open(path) as handle:
        row = next(r for r in csv.DictReader(handle) if r["force_field"] == "model")
    return {k: float(v) for k, v in row.items() if k != "force_field"}


def _rate(system: openmm.System, x: np.ndarray, platform: str, seconds: float) -> float:
    properties = {"Threads": "1"} if platform == "CPU" else {}
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform),
                             properties)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        context.setPositions(x)
        context.getState(getEnergy=True, getForces=True)
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "urey-bradley"))
    parser.add_argument("--molecules", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=0.5, help="per molecule, platform and arm")
    args = parser.parse_args()
    runs = Path(args.runs)
    print("industry benchmark, held-out test molecules (95 % bootstrap intervals):")
    print(f"{'arm':8s} {'median RMSD A':>26s} {'median TFD':>28s} {'ddE RMSE kcal/mol':>22s}")
    summaries = {arm: _summary(runs / arm / "benchmark" / "summary.csv") for arm in ARMS}
    for arm, s in summaries.items():
        print(f"{arm:8s} {s['rmsd_median']:.3f} [{s['rmsd_median_lo']:.3f},{s['rmsd_median_hi']:.3f}]"
              f"      {s['tfd_median']:.4f} [{s['tfd_median_lo']:.4f},{s['tfd_median_hi']:.4f}]"
              f"      {s['dde_rmse']:.2f} [{s['dde_rmse_lo']:.2f},{s['dde_rmse_hi']:.2f}]")
    a, b = summaries["plain"], summaries["ub"]
    print(f"ub - plain: RMSD {b['rmsd_median'] - a['rmsd_median']:+.3f} A, "
          f"TFD {b['tfd_median'] - a['tfd_median']:+.4f}, ddE RMSE {b['dde_rmse'] - a['dde_rmse']:+.2f} kcal/mol")

    keys = sorted(json.loads((runs / "ub" / "splits.json").read_text())["test"])[:args.molecules]
    molecules = read_benchmark_sdf(INDUSTRY_SDF, keys=set(keys))
    models = {arm: gnnff.get_model(str(runs / arm / "model.pt")) for arm in ARMS}
    terms = {arm: 0 for arm in ARMS}
    seconds = {(arm, platform): 0.0 for arm in ARMS for platform in ("CPU", "Reference")}
    for molecule in molecules:
        x = positions_nm(molecule.mol)[0]
        for arm, model in models.items():
            system = gnnff.assign_parameters(molecule.mol, model=model).to_openmm()
            terms[arm] += sum(
                f.getNumBonds() if isinstance(f, openmm.HarmonicBondForce) else
                f.getNumAngles() if isinstance(f, openmm.HarmonicAngleForce) else
                f.getNumTorsions() if isinstance(f, openmm.PeriodicTorsionForce) else 0
                for f in system.getForces())
            for platform in ("CPU", "Reference"):
                seconds[arm, platform] += 1.0 / _rate(system, x, platform, args.seconds)
    n = len(molecules)
    print(f"\ncost on {n} test molecules (sums over molecules of one evaluation each):")
    for arm in ARMS:
        print(f"{arm:8s} valence terms per molecule {terms[arm] / n:7.1f}   energy+forces: CPU (1 thread) "
              f"{1e6 * seconds[arm, 'CPU'] / n:7.1f} us, Reference {1e6 * seconds[arm, 'Reference'] / n:7.1f} us")
    ratio = {platform: seconds["ub", platform] / seconds["plain", platform] for platform in ("CPU", "Reference")}
    print(f"ub / plain: terms x{terms['ub'] / terms['plain']:.2f}, CPU time x{ratio['CPU']:.2f}, "
          f"Reference time x{ratio['Reference']:.2f}")


if __name__ == "__main__":
    main()
