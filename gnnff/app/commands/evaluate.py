"""``gnnff evaluate``: energy and force RMSE tables and parity plots of a model beside the
Sage baseline, against QM data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gnnff.errors import InputError

__all__ = ["add_arguments", "handle"]


def add_arguments(subparsers) -> None:
    """Add ``evaluate`` to ``subparsers``."""
    e = subparsers.add_parser("evaluate", help="RMSE tables and parity plots against QM data",
                              description="Energy/force RMSE per data set (bootstrap 95%% intervals over "
                                          "molecules) for a model beside the Sage baseline.")
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="model file (.pt) or model name")
    e.add_argument("data", metavar="DATA", nargs="+", help="SPICE-layout .hdf5 or QCArchive .sdf[.gz] files")
    e.add_argument("-o", "--output", default="evaluation", help="folder for results and plots (default: %(default)s)")
    e.add_argument("--splits", metavar="SPLITS.json", help="restrict to one part of a training run's splits.json")
    e.add_argument("--part", default="test", help="part of --splits to use (default: %(default)s)")
    e.add_argument("--baseline-charges", default="am1bcc-fast",
                   help="charges of the Sage baseline (default: %(default)s); 'none' skips the baseline")
    e.add_argument("--limit", type=int, default=None, help="first N molecules of each file")
    e.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Evaluate; print the table and where the results went."""
    from gnnff.sources.models import get_model
    from gnnff.train.evaluate import evaluate, format_table

    sources = {"gnnff": get_model(args.checkpoint)}
    if args.baseline_charges != "none":
        sources["sage"] = get_model("sage", charges=args.baseline_charges)
    keys = None
    if args.splits:
        try:
            keys = set(json.loads(Path(args.splits).read_text())[args.part])
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{args.splits}: cannot read part '{args.part}' ({err})") from None
    rows = evaluate(sources, args.data, output=args.output, keys=keys, limit=args.limit)
    print(format_table(rows))
    print(f"results and parity plots in {args.output}/")
    return 0
