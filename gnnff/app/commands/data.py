"""``gnnff data``: reference data (conformers labelled by a reference method) appended to a
SPICE-layout HDF5 file."""

from __future__ import annotations

import argparse
import sys

from gnnff.app.commands._common import Listed, labelers, records

__all__ = ["add_arguments", "handle"]


def add_arguments(subparsers) -> None:
    """Add ``data`` to ``subparsers``."""
    g = subparsers.add_parser("data", help="generate reference data (conformers + QM/ML labels) as HDF5",
                              description="Conformers (input 3D or ETKDG, plus MD frames at elevated temperature) "
                                          "labelled by a reference method, appended to a SPICE-layout HDF5 file; "
                                          "molecules already in the file are skipped (resumable).")
    g.add_argument("input", metavar="INPUT", help="molecule file or SMILES, as for parametrize")
    g.add_argument("-o", "--output", required=True, help="HDF5 file to create or extend")
    g.add_argument("--labeler", default="gfn2-xtb", action=Listed, names=labelers, help="reference method: {}")
    g.add_argument("--etkdg", type=int, default=4, help="ETKDG conformers when the input has no 3D (default: 4)")
    g.add_argument("--md-frames", type=int, default=8, help="MD frames per starting conformer (default: 8)")
    g.add_argument("--temperature", type=float, default=500.0, help="MD temperature in K (default: 500)")
    g.add_argument("--torsion-step", type=float, default=0.0, metavar="DEGREES",
                   help="also sample torsion grids: rotatable bonds set to every DEGREES and relaxed with the "
                        "dihedral restrained (default: 0, none)")
    g.add_argument("--max-torsions", type=int, default=2,
                   help="rotatable bonds per molecule driven with --torsion-step (default: %(default)s)")
    g.add_argument("--torsion-relax-steps", type=int, default=0, metavar="N",
                   help="then relax the torsion-grid frames with the labeler for N steps, dihedral still "
                        "restrained (default: 0, the classical relaxation only)")
    g.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    g.add_argument("--seed", type=int, default=0,
                   help="random seed of the ETKDG conformers and the MD (default: %(default)s)")
    g.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Label the input's molecules; 0 if none failed, else 1."""
    from gnnff.train.generate import SamplingConfig, generate

    from gnnff.errors import InputError

    if not 0.0 <= args.torsion_step <= 180.0:
        raise InputError(f"--torsion-step {args.torsion_step:g}: give a grid spacing in degrees, above 0 and at "
                         "most 180 (0: no torsion grids)")
    if args.torsion_relax_steps > 0 and args.torsion_step == 0:
        raise InputError("--torsion-relax-steps relaxes torsion-grid frames: give --torsion-step too "
                         "(e.g. --torsion-step 30)")
    _, _, inputs = records(args.input)
    sampling = SamplingConfig(etkdg=args.etkdg, md_frames=args.md_frames, temperature=args.temperature,
                              seed=args.seed, torsion_step=args.torsion_step, max_torsions=args.max_torsions,
                              torsion_relax_steps=args.torsion_relax_steps)
    report = generate(list(inputs), args.output, labeler=args.labeler, sampling=sampling, workers=args.workers)
    for message in report["failed"]:
        print(f"gnnff: error: {message}", file=sys.stderr)
    print(f"wrote {len(report['written'])} molecule(s) to {args.output}; {len(report['skipped'])} already there; "
          f"{len(report['failed'])} failed")
    return 0 if not report["failed"] else 1
