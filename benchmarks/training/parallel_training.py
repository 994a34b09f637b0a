"""Data-parallel training throughput: one process vs ``gnnff train --nproc N`` on the same config.

    python benchmarks/training/parallel_training.py [--molecules 300] [--epochs 3] [--nproc 2] [--threads 2]

Trains the gnnff-v1 architecture (stage 2, valence; no separate stage 1, so the nonbonded
head is trained with MMFF94 reference charges as in gnnff-industry-v0) on the first
``--molecules`` molecules of ../shared/data/industry-benchmark-dev.sdf.gz, for
``--epochs`` epochs of batches of 32 molecules, three ways, each in a fresh process:
one process with ``--threads`` torch threads, one process with 1 thread, and ``--nproc``
processes (``optim.threads`` = ``--threads``, split between them). Prints the wall time of
the epochs (training and validation passes, from metrics.csv: reading the data and the
reference charges are left out) and training conformations per second, and the last epoch's validation loss of
each run (the data-parallel run follows the single-process one: same global batch).
Nothing is asserted; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import INDUSTRY_SDF  # noqa: E402


def config(folder: Path, molecules: int, epochs: int, threads: int) -> dict:
    return {
        "data": [{"path": str(INDUSTRY_SDF), "limit": molecules}],
        "output": str(folder / "run"),
        "reference_charges": "mmff94",
        "reference_cache": str(folder.parent / "refs.json"),
        "network": {"width": 128, "depth": 4, "head_width": 128, "head_depth": 2, "features": "v1",
                    "torsion_threshold": 0.8, "linear_angles": True},
        "optim": {"epochs": epochs, "batch_molecules": 32, "learning_rate": 1e-3, "patience": 100,
                  "threads": threads},
        "split": {"validation": 0.1, "test": 0.1, "seed": 0},
    }


def run(folder: Path, cfg: dict, nproc: int) -> tuple[float, float]:
    """(seconds of the training epochs, last validation loss)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["optim"]["threads"])}
    subprocess.run([sys.executable, "-m", "gnnff", "train", str(folder / "config.yaml"), "--nproc", str(nproc)],
                   check=True, stdout=subprocess.DEVNULL, env=env)
    with open(folder / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return sum(float(r["seconds"]) for r in rows[1:]), float(rows[-1]["validation_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=300, help="molecules read (all conformers of each)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    from gnnff.train.config import load_config
    from gnnff.train.training import prepare_data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = prepare_data(load_config(config(tmp / "probe", args.molecules, args.epochs, 1)))  # fills the cache
        conformations = sum(d.n_conformations for d, _ in parts["train"])
        print(f"{len(parts['train'])} training molecules, {conformations} conformations; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}")
        rows = [
            (f"1 process x {args.threads} thread(s)", run(tmp / "a", config(tmp / "a", args.molecules, args.epochs,
                                                                              args.threads), 1)),
            ("1 process x 1 thread", run(tmp / "b", config(tmp / "b", args.molecules, args.epochs, 1), 1)),
            (f"--nproc {args.nproc} ({max(1, args.threads // args.nproc)} thread(s) each)",
             run(tmp / "c", config(tmp / "c", args.molecules, args.epochs, args.threads), args.nproc)),
        ]
    print(f"{'run':36s} {'seconds':>8s} {'conformations/s':>16s} {'validation loss':>16s}")
    for label, (seconds, loss) in rows:
        print(f"{label:36s} {seconds:8.1f} {args.epochs * conformations / seconds:16.1f} {loss:16.4f}")


if __name__ == "__main__":
    main()
