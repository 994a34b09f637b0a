"""Library throughput of ``gnnff parametrize``: one process, and ``--dask local:1`` / ``local:2``.

    python benchmarks/speed/dask_throughput.py [--molecules 300] [--dask local:1 local:2] [--keep DIR]

Writes the first N SMILES of ``../shared/data/spice-pubchem-sets1-6.smi.gz`` to a ``.smi``
file (not timed) and runs, each in a fresh folder, ``gnnff parametrize lib.smi -o out/ -q``
with the default model and XML output: ``--workers 1`` (this process alone), then each
``--dask`` value (a LocalCluster of single-threaded worker processes, started and shut down
by the command). For each it prints the wall time of the whole command (Python start,
imports, model load, cluster start and shutdown included), the run time the command reports
(from the first record to the report; cluster start included), molecules written per second
of each, and the report's counts; then, for each ``local:N``, the time to start and shut down
that LocalCluster alone (part of the command's time; a cluster started once serves any
number of runs through ``--dask ADDRESS``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import SPICE_SMILES, read_smiles  # noqa: E402


def write_library(path: Path, n: int) -> int:
    """The first ``n`` SMILES lines of the shared PubChem set, numbered, to ``path``."""
    lines = [f"{smiles} pubchem-{i}" for i, smiles in enumerate(read_smiles(SPICE_SMILES, limit=n), 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def time_run(folder: Path, extra: list[str]) -> dict:
    """Run ``gnnff parametrize`` on ``folder/lib.smi``; its timings and report counts."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "gnnff", "parametrize", "lib.smi", "-o", "out/", *extra],
                            cwd=folder, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"gnnff parametrize {' '.join(extra)} failed: {result.stderr.strip()[-500:]}")
    reported = re.search(r" in ([\d.]+) s", result.stdout)
    summary = json.loads((folder / "out" / "report.json").read_text(encoding="utf-8"))["summary"]
    return {"wall": wall, "run": float(reported.group(1)) if reported else float("nan"), **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=300)
    parser.add_argument("--dask", nargs="*", default=["local:1", "local:2"], help="--dask values to time")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep the outputs")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="gnnff-dask-bench-"))
    print(f"{args.molecules} molecules of {SPICE_SMILES.name}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    print(f"{'backend':18s} {'wall s':>8s} {'mol/s':>7s} {'run s':>8s} {'mol/s':>7s}  ok/failed/skipped")
    for name, extra in [("one process", ["--workers", "1"])] + [(f"--dask {d}", ["--dask", d]) for d in args.dask]:
        folder = root / re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        folder.mkdir(parents=True, exist_ok=True)
        write_library(folder / "lib.smi", args.molecules)
        r = time_run(folder, extra)
        print(f"{name:18s} {r['wall']:8.1f} {r['ok'] / r['wall']:7.1f} {r['run']:8.1f} {r['ok'] / r['run']:7.1f}"
              f"  {r['ok']}/{r['failed']}/{r['skipped']}")
    for value in args.dask:
        if value.startswith("local:"):
            print(f"LocalCluster of {value[6:]} worker(s): {cluster_seconds(int(value[6:])):.1f} s to start and stop")
    print(f"outputs in {root}" if args.keep else "")


def cluster_seconds(workers: int) -> float:
    """Seconds to start and shut down a LocalCluster of ``workers`` single-threaded processes."""
    code = ("import logging, time; from distributed import Client, LocalCluster; t = time.perf_counter()\n"
            f"with LocalCluster(n_workers={workers}, threads_per_worker=1, dashboard_address=':0', "
            "silence_logs=logging.ERROR) as c, Client(c): pass\n"
            "print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.split()[-1])


if __name__ == "__main__":
    main()
