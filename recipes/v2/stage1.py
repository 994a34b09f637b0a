"""gnnff-v2 stage 1: gnnff-v1's charge and Lennard-Jones network, trained further with a dipole term.

gnnff-v1's charges are AM1-BCC's per atom (0.028 e on the 200-molecule draw) but its dipoles
are not (dipole-vector RMSE 1.47 D against full AM1-BCC; the ``am1bcc-mmff`` labels
themselves 0.78 D): per-atom errors that are small but correlated in space. This stage starts
from gnnff-v1's nonbonded network and continues on the same labels (recipes/v1/labels.jsonl,
its first 11,987 usable entries) with the dipole term of
:mod:`gnnff.train.nonbonded_training` switched on, then writes gnnff-v1 with that nonbonded
network swapped in (valence unchanged) so that ``benchmarks/charges.py --model`` can score it.

    python recipes/v2/stage1.py -o runs/v2/stage1            # defaults: the recorded run

The stage folder is what ``gnnff train`` reads as a finished stage 1 (``nonbonded.pt``,
``nonbonded.json``), so stage 2 of a v2 config pointing at it starts from these charges.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

import torch

from gnnff.errors import GnnffError
from gnnff.nn.checkpoint import load_checkpoint, network_from_checkpoint, save_checkpoint
from gnnff.sources.models import WEIGHTS_DIR
from gnnff.train.config import NonbondedStage
from gnnff.train.nonbonded_training import train_nonbonded

HERE = Path(__file__).resolve().parent
LABELS = HERE.parent / "v1" / "labels.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", default=str(WEIGHTS_DIR / "gnnff-v1.pt"), help="checkpoint to start from")
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--limit", type=int, default=11987, help="first N usable labels (gnnff-v1's)")
    parser.add_argument("--dipole", type=float, default=0.1, help="weight of the dipole term")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-o", "--output", default="runs/v2/stage1")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = Path(args.labels)
    if not labels.is_file():  # the committed snapshot
        with gzip.open(labels.with_suffix(".jsonl.gz"), "rb") as src, open(labels, "wb") as dst:
            shutil.copyfileobj(src, dst)
    payload = load_checkpoint(args.init)
    network, config = network_from_checkpoint(payload, args.init)
    network.float().train()
    stage = NonbondedStage(labels=str(labels), epochs=args.epochs, batch_molecules=64,
                           learning_rate=args.learning_rate, patience=10, validation=0.05,
                           dipole=args.dipole, limit=args.limit)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    summary = train_nonbonded(network.nonbonded, stage, features=config.features, exclude=set(), output=out, seed=0)
    best = summary["best"]
    print(f"stage 1 with dipole term {args.dipole}: validation charges {best['charge_rmse']:.4f} e, "
          f"dipole {best['dipole_rmse']:.3f} D, sigma {100 * best['sigma_rel_rmse']:.2f} %, "
          f"epsilon {100 * best['epsilon_log_rmse']:.2f} %")
    domain = payload["domain"]
    path = save_checkpoint(out / "gnnff-v1-dipole.pt", network.eval(), config, elements=domain["elements"],
                           ions_only=domain.get("ions_only", ()),
                           training={**payload.get("training", {}), "nonbonded": summary,
                                     "note": f"gnnff-v1 valence; stage 1 continued with dipole {args.dipole}"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GnnffError as err:
        sys.exit(f"stage1.py: error: {err}")
