"""``gnnff finetune``: tune a model's valence terms on torsion drives of the user's ligands
(bespoke fitting, :mod:`gnnff.train.finetune`)."""

from __future__ import annotations

import argparse
import math
import sys

from gnnff.app.commands._common import Listed, labelers
from gnnff.errors import InputError

__all__ = ["add_arguments", "handle"]


def add_arguments(subparsers) -> None:
    """Add ``finetune`` to ``subparsers``."""
    f = subparsers.add_parser(
        "finetune", help="tune a model's valence terms on torsion drives of your ligands (bespoke)",
        description="For each molecule: constrained torsion drives of its rotatable bonds (central and "
                    "ring-substituent torsions, one per symmetry-unique bond) with the labeler, plus "
                    "off-equilibrium samples; then the fit changes, by default, residuals on the torsions of the "
                    "driven bonds' chemical environments only (--tune heads: the valence heads), with a pull "
                    "toward the base model's parameters (trunk, charges and Lennard-Jones frozen). Writes "
                    "the checkpoint (use it as --model) and WORK/labels (resumable) and WORK/report (a PNG per "
                    "scan, scans.csv, summary.json: base vs tuned on held-out grid points). A molecule that "
                    "cannot be labelled is reported and left out.")
    f.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="molecule files (3D conformers start the drives) or SMILES")
    f.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="the fine-tuned checkpoint")
    f.add_argument("--labeler", default="ani-2x", action=Listed, names=labelers, help="reference method: {}")
    f.add_argument("--base", default=None, metavar="NAME_OR_PATH", help="model to tune (default: the default model)")
    f.add_argument("--scans", default="auto", metavar="auto|N",
                   help="torsions per molecule: auto (every one found, default) or at most N")
    f.add_argument("--step", type=float, default=15.0, metavar="DEG", help="drive grid spacing (default: %(default)s)")
    f.add_argument("--samples", type=int, default=2, help="off-equilibrium samples per fitted point (default: 2)")
    f.add_argument("--conformers", type=int, default=0, metavar="N",
                   help="also fit N conformers per molecule embedded from its graph and minimised with the "
                        "labeler, as relaxed relative energies and at their minima (default: 0, none: on the "
                        "development ligands they did not help the gas phase)")
    f.add_argument("--hold-out", type=int, default=2, metavar="K",
                   help="hold out every K-th grid point of each scan for the report (default: 2; 0: none)")
    f.add_argument("--hold-out-scans", action="store_true",
                   help="also keep each molecule's last scan (of two or more) out of the fit, reported apart")
    _add_fit_options(f)
    f.add_argument("--work", default=None, metavar="DIR", help="labels and report (default: MODEL.finetune)")
    f.add_argument("--workers", type=int, default=1,
                   help="molecules labelled at once, one single-threaded process each (default: 1)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing MODEL.pt (labels are reused)")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    f.set_defaults(handler=handle)


def _add_fit_options(f: argparse.ArgumentParser) -> None:
    """The options of the fit itself: steps, loss weights, what is tuned, step size."""
    f.add_argument("--steps", type=int, default=300, help="optimiser steps (default: %(default)s)")
    f.add_argument("--pull", type=float, default=0.01,
                   help="weight of the pull to the base model on the driven bonds' torsions (default: %(default)s)")
    f.add_argument("--anchor", type=float, default=1.0,
                   help="weight of the pull on every other valence parameter of the series (default: %(default)s)")
    f.add_argument("--profile", type=float, default=1.0,
                   help="weight of the relaxed-profile loss: MM-minimised scan points against the labeler's "
                        "(default: %(default)s)")
    f.add_argument("--energies", type=float, default=None,
                   help="weight of the energies at the labeler's geometries (default: 1 with --tune heads, "
                        "0.1 with --tune torsions)")
    f.add_argument("--forces", type=float, default=0.02,
                   help="weight of the forces at the labeler's geometries (default: %(default)s)")
    f.add_argument("--relax-every", type=int, default=25, metavar="N",
                   help="steps between re-minimisations of the profile points (default: %(default)s)")
    f.add_argument("--terms", default=None, metavar="T1,T2",
                   help="with --tune heads: the valence heads trained, e.g. propers,impropers (default: all)")
    f.add_argument("--tune", choices=("torsions", "heads"), default="torsions",
                   help="what the fit changes: residuals on the torsions of the driven bonds' chemical environments "
                        "only (every other parameter stays the base model's exactly), or the valence heads (every "
                        "molecule's valence terms move a little) (default: %(default)s)")
    f.add_argument("--learning-rate", type=float, default=1e-3, help="Adam step size (default: %(default)s)")
    f.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="step size decayed to zero along a cosine, or held (default: %(default)s)")


def handle(args: argparse.Namespace) -> int:
    """Label and fit; print the held-out RMSE before and after. 1 if a molecule was left out."""
    from gnnff.train.finetune import FinetuneSettings, finetune

    if args.scans == "auto":
        scans = None
    else:
        try:
            scans = int(args.scans)
        except ValueError:
            raise InputError(f"--scans takes 'auto' or a number, not {args.scans}") from None
    settings = FinetuneSettings(labeler=args.labeler, base=args.base, scans=scans, step=args.step,
                                samples=args.samples, hold_out=args.hold_out,
                                hold_out_scans=args.hold_out_scans, steps=args.steps, pull=args.pull,
                                anchor=args.anchor,
                                profile=args.profile, energies=args.energies, forces=args.forces,
                                relax_every=args.relax_every, learning_rate=args.learning_rate,
                                schedule=args.schedule,
                                terms=tuple(args.terms.split(",")) if args.terms else None,
                                conformers=args.conformers, tune=args.tune)
    summary = finetune(args.inputs, args.output, settings=settings, work=args.work, overwrite=args.overwrite,
                       workers=args.workers, progress=not args.quiet)
    for failure in summary["failed"]:
        print(f"gnnff: skipped: {' '.join(failure['error'].split())}", file=sys.stderr)
    _print_summary(summary, args)
    return 1 if summary["failed"] else 0


def _print_summary(summary: dict, args: argparse.Namespace) -> None:
    held, seconds = summary["held_out_rmse"], summary["seconds"]
    whole = summary["held_out_scan_rmse"]
    scans = (f" (points), {whole['base']:.2f} -> {whole['tuned']:.2f} on {summary['held_out_scans']} held-out scans"
             if summary["held_out_scans"] else "")
    c = summary["conformer_rmse"]
    if math.isfinite(c["base"]):
        scans += f"; relaxed conformer energies {c['base']:.2f} -> {c['tuned']:.2f} (fitted)"
    print(f"fine-tuned {summary['base']} on {summary['scans']} scans of {summary['molecules']} molecules "
          f"({args.labeler}): held-out profile RMSE {held['base']:.2f} -> {held['tuned']:.2f} kcal/mol{scans}; "
          f"{seconds['total']:.0f} s ({seconds['labelling']:.0f} s labelling, {seconds['fitting']:.0f} s fitting); "
          f"{args.output}, report in {summary['report']}/")
