"""``gnnff scan``: drive torsions with a reference method and compare the model's relaxed
profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from gnnff.app.commands._common import Listed, input_stem, labelers, name_option, selected
from gnnff.errors import InputError

__all__ = ["add_arguments", "handle"]


def add_arguments(subparsers) -> None:
    """Add ``scan`` to ``subparsers``."""
    s = subparsers.add_parser(
        "scan", help="drive one torsion with a reference method and compare the model's profile",
        description="Constrained-optimisation torsion drive (geomeTRIC): the dihedral I-J-K-L is held at each "
                    "grid value (every --step degrees, both directions round from the input conformer, the lower "
                    "energy kept) with the reference method, everything else optimised; the model's System is "
                    "then minimised under the same constraint at each point. Writes profile.csv, profile.png, "
                    "scan.sdf and summary.json (RMSE of the model's profile) to the output folder.")
    s.add_argument("input", metavar="INPUT", help="molecule file (its first conformer starts the drive; FILE:N or "
                   "FILE:NAME: its record N or the record titled NAME) or SMILES")
    name_option(s)
    s.add_argument("--torsion", nargs="+", required=True, metavar="I J K L | auto",
                   help="the dihedral's atoms, 0-based indices in the input's order (hydrogens included); "
                        "auto: every symmetry-unique rotatable bond between heavy-atom groups, one subfolder each")
    s.add_argument("--labeler", default="ani-2x", action=Listed, names=labelers, help="reference method: {}")
    s.add_argument("--model", default=None, metavar="NAME_OR_PATH", help="the model compared (default: the default)")
    s.add_argument("--step", type=float, default=15.0, metavar="DEG", help="grid spacing (default: %(default)s)")
    s.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="output folder (default: INPUT-stem-scan-I-J-K-L, or INPUT-stem-scans with auto)")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier scan in the output folder")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Scan each torsion asked for; print one line per scan."""
    from gnnff.train.scan import rotatable_torsions, scan

    molecule = selected(args.input, args.name)
    stem = input_stem(args.input, args.name)
    if args.torsion == ["auto"]:
        from gnnff.chem.molecule import load_molecule

        torsions = rotatable_torsions(load_molecule(molecule))
        if not torsions:
            raise InputError(f"{args.input}: no rotatable bond between heavy-atom groups to scan; "
                             "give --torsion I J K L")
        root = Path(args.output or f"{stem}-scans")
        outputs = [root / "-".join(map(str, t)) for t in torsions]
    else:
        try:
            torsions = [tuple(int(a) for a in args.torsion)]
        except ValueError:
            torsions = []
        if len(args.torsion) != 4 or not torsions:
            raise InputError(f"--torsion takes four atom indices or 'auto', not {' '.join(args.torsion)}")
        outputs = [Path(args.output or f"{stem}-scan-{'-'.join(args.torsion)}")]
    for torsion, output in zip(torsions, outputs):
        summary = scan(molecule, torsion, output, labeler=args.labeler, model=args.model, step=args.step,
                       overwrite=args.overwrite, progress=not args.quiet)
        print(f"scan of torsion {summary['torsion']} ({summary['molecule']}): {summary['points']} points, "
              f"{args.labeler} vs {summary['model']}: RMSE {summary['rmse_kcal_mol']:.2f} kcal/mol; "
              f"{summary['seconds']:.0f} s ({summary['labelling_seconds']:.0f} s labelling); {output}/")
    return 0
