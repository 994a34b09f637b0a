"""OpenFF industry-benchmark protocol: gnnff beside Sage 2.0.0 and GAFF 2.11 on the same conformers.

    python benchmarks/gas_phase/industry.py --model runs/industry-small/model.pt \
        --splits runs/industry-small/splits.json --part test -o runs/industry-small/benchmark

Minimises every conformer of the selected molecules with each model (OpenMM Reference,
1,500 iterations), measures RMSD / TFD / ddE against the QM geometry and energy, and puts
the benchmark's own Sage and GAFF numbers for the same QCArchive records beside them.
Writes per-conformer CSVs, summary.csv and cumulative-distribution plots; prints a table.

A force field gnnff does not run (a peer such as Garnet) takes part as ``--model systems:DIR``
(labelled by DIR's name): DIR holds one OpenMM System XML per molecule, ``DIR/<id>.xml``,
id = the molecule's first QCArchive record id. ``--export-items FILE`` writes the selected
molecules' ids and mapped SMILES (atoms in this benchmark's order) for the peer's script,
e.g. ``benchmarks/peers/garnet_systems.py FILE -o DIR``, and stops.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gnnff
from gnnff.errors import GnnffError
from gnnff.progress import progress
from gnnff.train.benchmark import (
    ConformerResult,
    paired_differences,
    plot_cumulative,
    read_baseline_csv,
    read_benchmark_sdf,
    run_protocol,
    summarize,
    write_items,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import INDUSTRY_SDF, SHARED_DATA, force_fields, run, write_csv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[],
                        help="model name, .pt, or systems:DIR (precomputed Systems) (repeatable)")
    parser.add_argument("--export-items", metavar="FILE",
                        help="write the selected molecules' ids and mapped SMILES as JSON (the input of a peer "
                             "force field's script, e.g. benchmarks/peers/garnet_systems.py) and stop")
    parser.add_argument("--sage-charges", default=None,
                        help="also run gnnff's classical Sage 2.2 path with these charges (e.g. am1bcc-fast)")
    parser.add_argument("--splits", help="training run's splits.json; restricts to --part")
    parser.add_argument("--part", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N molecules of the SDF")
    parser.add_argument("--data", default=str(INDUSTRY_SDF))
    parser.add_argument("--baseline", default=str(SHARED_DATA / "industry-benchmark-dev-baseline-metrics.csv.gz"))
    parser.add_argument("--paired", metavar="NAME",
                        help="print every other force field minus NAME (a --model, or a baseline column such as "
                             "'OpenFF 2.0.0'), paired by molecule, with 95 %% intervals (default: the first --model)")
    parser.add_argument("--reuse", action="store_true",
                        help="read a model's results from OUT/conformers-<model>.csv when there (same molecules)")
    parser.add_argument("-o", "--output", default="benchmark-industry")
    args = parser.parse_args()
    keys = set(json.loads(Path(args.splits).read_text())[args.part]) if args.splits else None
    molecules = read_benchmark_sdf(args.data, keys=keys, limit=args.limit)
    if args.export_items:
        write_items(args.export_items, [(m.item_id, m.mol) for m in molecules])
        print(f"{len(molecules)} molecules' ids and mapped SMILES in {args.export_items}")
        return
    sources = force_fields(args.model, systems=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.sage_charges:
        sources["sage-2.2 (gnnff path)"] = gnnff.get_model("sage", charges=args.sage_charges)
    results: dict[str, list[ConformerResult]] = {}
    for name, source in sources.items():
        stored = out / f"conformers-{name.replace(' ', '_')}.csv"
        if args.reuse and stored.is_file():
            results[name] = read_conformers_csv(stored, {m.key for m in molecules})
            print(f"{name}: {len(results[name])} conformers read from {stored}")
            continue
        start, failed = time.perf_counter(), []
        results[name] = []
        for molecule in progress(molecules, desc=name, unit="mol"):
            try:
                results[name] += run_protocol(source, molecule)
            except GnnffError as err:
                failed.append(f"{molecule.key}: {err}")
        print(f"{name}: {len(molecules) - len(failed)} molecules in {time.perf_counter() - start:.0f} s"
              + (f", {len(failed)} failed (see failed-{name}.txt)" if failed else ""))
        (out / f"failed-{name}.txt").write_text("\n".join(failed) + "\n") if failed else None
    done = {r.record_id for items in results.values() for r in items}
    key_of = {r.record_id: r.key for items in results.values() for r in items}
    for ff, records in read_baseline_csv(args.baseline).items():
        results[ff] = [ConformerResult(rid, key_of[rid], *values) for rid, values in records.items() if rid in done]
    rows = summarize(results)
    for name, items in results.items():
        write_csv(out / f"conformers-{name.replace(' ', '_')}.csv",
                  [{"record_id": r.record_id, "molecule": r.key, "rmsd": r.rmsd, "tfd": r.tfd, "dde": r.dde}
                   for r in items], fieldnames=["record_id", "molecule", "rmsd", "tfd", "dde"])
    write_csv(out / "summary.csv", rows)
    plot_cumulative(results, out / "cumulative.png")
    print(f"{'force field':28s} {'mols':>5s} {'confs':>6s}  {'median RMSD A':>22s}  {'median TFD':>24s}  "
          f"{'ddE RMSE kcal/mol':>22s}")
    for r in rows:
        print(f"{r['force_field']:28s} {r['molecules']:5d} {r['conformers']:6d}  "
              f"{r['rmsd_median']:.3f} [{r['rmsd_median_lo']:.3f},{r['rmsd_median_hi']:.3f}]  "
              f"{r['tfd_median']:.4f} [{r['tfd_median_lo']:.4f},{r['tfd_median_hi']:.4f}]  "
              f"{r['dde_rmse']:.2f} [{r['dde_rmse_lo']:.2f},{r['dde_rmse_hi']:.2f}]")
    base = args.paired or (next(iter(sources)) if len(sources) > 1 else None)
    if base is not None:
        if base not in results:
            raise SystemExit(f"--paired {base}: not among the force fields run ({', '.join(results)})")
        print(f"\npaired by molecule, minus {base} (95 % interval; negative: better than {base})")
        print(f"{'force field':28s}  {'median RMSD A':>26s}  {'median TFD':>29s}  {'ddE RMSE kcal/mol':>23s}")
        for name in results:
            if name == base:
                continue
            d = paired_differences(results, base, name)
            print(f"{name:28s}  " + "  ".join(f"{v:+.{p}f} [{lo:+.{p}f},{hi:+.{p}f}]" for (v, lo, hi), p in
                                              ((d["rmsd_median"], 3), (d["tfd_median"], 4), (d["dde_rmse"], 2))))
    print(f"per-conformer CSVs, summary.csv and cumulative.png in {out}/")


def read_conformers_csv(path: Path, keys: set[str]) -> list[ConformerResult]:
    """The per-conformer results an earlier run wrote, for the molecules in ``keys``."""
    import csv

    with open(path, newline="") as handle:
        return [ConformerResult(row["record_id"], row["molecule"], float(row["rmsd"]), float(row["tfd"]), float(row["dde"]))
                for row in csv.DictReader(handle) if row["molecule"] in keys]


if __name__ == "__main__":
    run(main)
