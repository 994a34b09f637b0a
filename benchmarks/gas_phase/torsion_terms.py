"""Exported proper-torsion terms per molecule: gnnff models against Sage 2.2 on the same molecules.

    python benchmarks/gas_phase/torsion_terms.py [--model gnnff-v1 --model gnnff-industry-v0] [--molecules 200]

Takes the first N distinct molecules of ``../shared/data/industry-benchmark-dev.sdf.gz``
(or, with ``--splits runs/v1/splits.json``, that run's test molecules), parametrizes each
with every model and with ``sage`` (its torsions do not depend on the charges, so MMFF94
charges are used for speed) and counts ``addTorsion`` calls of the propers force (group
2; Sage's merged same-periodicity cosines counted once, as exported). Prints the mean per
molecule, the ratio to Sage over the set and the largest per-molecule ratio. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import openmm
from rdkit import RDLogger

import gnnff
from gnnff.errors import GnnffError
from gnnff.schema import PROPERS
from gnnff.train.data import molecule_key, qcarchive_groups

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import INDUSTRY_SDF  # noqa: E402


def proper_terms(system: openmm.System) -> int:
    return sum(f.getNumTorsions() for f in system.getForces()
               if isinstance(f, openmm.PeriodicTorsionForce) and f.getForceGroup() == PROPERS.force_group)


def molecules(path: Path, n: int, keys: set[str] | None) -> list:
    out = []
    for records in qcarchive_groups(path, None):
        mol = records[0]
        try:
            key = molecule_key(gnnff.load_molecule(mol))
        except GnnffError:
            continue
        if keys is None or key in keys:
            out.append(mol)
        if len(out) >= n:
            break
    return out


def main() -> None:
    RDLogger.DisableLog("rdApp.*")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="gnnff model name or .pt (repeatable)")
    parser.add_argument("--molecules", type=int, default=200)
    parser.add_argument("--splits", help="splits.json of a training run: use its test molecules")
    parser.add_argument("--data", default=str(INDUSTRY_SDF))
    args = parser.parse_args()
    keys = set(json.loads(Path(args.splits).read_text())["test"]) if args.splits else None
    mols = molecules(Path(args.data), args.molecules, keys)
    models = args.model or [gnnff.sources.models.DEFAULT_MODEL]
    counts: dict[str, list[int]] = {m: [] for m in [*models, "sage"]}
    for mol in mols:
        try:
            row = {m: proper_terms(gnnff.parametrize(mol, model=m)) for m in models}
            row["sage"] = proper_terms(gnnff.parametrize(mol, model="sage", charges="mmff94"))
        except GnnffError as err:
            print(f"skipped: {str(err).splitlines()[0]}", file=sys.stderr)
            continue
        for m, c in row.items():
            counts[m].append(c)
    n = len(counts["sage"])
    sage = sum(counts["sage"])
    print(f"{n} molecules; proper torsion terms (addTorsion calls) per molecule")
    print(f"{'model':<28}{'mean':>8}{'median':>8}{'max':>6}{'vs Sage':>9}{'worst molecule':>16}")
    for m, values in counts.items():
        worst = max(c / max(s, 1) for c, s in zip(values, counts["sage"]))
        print(f"{m:<28}{statistics.mean(values):>8.1f}{statistics.median(values):>8.0f}{max(values):>6d}"
              f"{sum(values) / sage:>8.2f}x{worst:>15.2f}x")


if __name__ == "__main__":
    main()
