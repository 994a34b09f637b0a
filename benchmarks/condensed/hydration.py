"""Hydration free energies of FreeSolv molecules: gnnff beside Sage 2.2 + AM1-BCC, same protocol.

    python benchmarks/condensed/hydration.py                      # CPU default: 10 small molecules
    python benchmarks/condensed/hydration.py --molecules 4 --validate   # Sage vs FreeSolv's GAFF/AM1-BCC calc
    python benchmarks/condensed/hydration.py --full --platform CUDA     # every molecule, GPU protocol

Alchemical decoupling in TIP3P with PME and in vacuum (openmmtools alchemical factory +
replica exchange, MBAR; see gnnff/condensed/hydration.py). The CPU default takes molecules
of at most 8 heavy atoms from ../shared/data/freesolv-dev.csv, evenly spaced over the
experimental range, and a short protocol (6-9 min per molecule and force field measured on
2 shared cores at --iterations 30, so roughly 15 min at the default 60); ``--full`` runs all 555 with 20 states and 1 ns per state. Per (force field,
molecule) results go to OUT/results/ as they finish, the samplers' netCDF files to OUT/work/
(an interrupted run resumes from both). Prints RMSE / MAE / R^2 / mean signed error vs
experiment with 95 % bootstrap intervals and writes OUT/hydration.png and OUT/summary.csv.
``--validate`` adds FreeSolv's own GAFF/AM1-BCC/TIP3P calculated values beside Sage.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

import gnnff
from gnnff.condensed.common import (
    DEFAULT_FORCE_FIELDS,
    ChargeCache,
    ResultStore,
    add_benchmark_arguments,
)
from gnnff.condensed.hydration import (
    HydrationProtocol,
    alchemical_states,
    hydration_free_energy,
)
from gnnff.progress import progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import (  # noqa: E402
    REFERENCES,
    SHARED_DATA,
    against_baseline,
    bootstrap_statistics,
    common_items,
    force_fields,
    png,
    read_freesolv,
    report_failures,
    rmse,
    run,
    run_side_by_side,
    write_csv,
)


def select(rows: list[dict], n: int, max_heavy: int) -> list[dict]:
    """``n`` molecules of at most ``max_heavy`` heavy atoms, evenly spaced over the
    experimental dG range (deterministic)."""
    small = sorted((r for r in rows if r["heavy_atoms"] <= max_heavy), key=lambda r: (r["dG_hyd_exp_kcal_mol"], r["id"]))
    if n >= len(small):
        return small
    picks = np.unique(np.round(np.linspace(0, len(small) - 1, n)).astype(int))
    return [small[i] for i in picks]


def plot(results: dict[str, dict[str, dict]], rows: dict[str, dict], path: Path, gaff: bool) -> None:
    with png(path, figsize=(5.5, 5.5)) as (fig, ax):
        values = []
        for label, marker in zip(results, "os^vD"):
            ids = sorted(results[label])
            exp = [rows[i]["dG_hyd_exp_kcal_mol"] for i in ids]
            calc = [results[label][i]["dG_kcal"] for i in ids]
            err = [results[label][i]["dG_err_kcal"] for i in ids]
            error = bootstrap_statistics(calc, exp)["RMSE"][0]
            ax.errorbar(exp, calc, yerr=err, fmt=marker, ms=5, alpha=0.8, label=f"{label} (RMSE {error:.2f})")
            values += exp + calc
        if gaff and results:
            ids = sorted(set().union(*[set(r) for r in results.values()]))
            exp = [rows[i]["dG_hyd_exp_kcal_mol"] for i in ids]
            calc = [rows[i]["dG_hyd_gaff_calc_kcal_mol"] for i in ids]
            ax.plot(exp, calc, "k+", ms=8, label="FreeSolv GAFF/AM1-BCC calc.")
            values += calc
        if values:
            lo, hi = min(values) - 1, max(values) + 1
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            ax.fill_between([lo, hi], [lo - 1, hi - 1], [lo + 1, hi + 1], color="0.9")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
        ax.set_xlabel("experiment (kcal/mol)")
        ax.set_ylabel("calculated (kcal/mol)")
        ax.set_title("Hydration free energies (TIP3P, PME)")
        ax.legend(fontsize=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_benchmark_arguments(parser, output="benchmark-hydration", baseline=REFERENCES / "hydration")
    parser.add_argument("--data", default=str(SHARED_DATA / "freesolv-dev.csv"))
    parser.add_argument("--molecules", type=int, default=10, help="molecules in the CPU default (default: %(default)s)")
    parser.add_argument("--max-heavy", type=int, default=8, help="heavy-atom limit of the CPU default")
    parser.add_argument("--ids", nargs="*", help="FreeSolv ids to run instead of a selection")
    parser.add_argument("--full", action="store_true", help="all molecules, GPU protocol (20 states, 1 ns each)")
    parser.add_argument("--iterations", type=int, help="replica-exchange iterations of the solvent leg")
    parser.add_argument("--vacuum-iterations", type=int)
    parser.add_argument("--validate", action="store_true", help="show FreeSolv's GAFF/AM1-BCC calculated values beside")
    args = parser.parse_args()

    out = Path(args.output)
    store = ResultStore(out / "results", baseline=args.baseline)
    changes = {k: v for k, v in (("iterations", args.iterations), ("vacuum_iterations", args.vacuum_iterations),
                                 ("platform", args.platform)) if v is not None}
    protocol = HydrationProtocol.full(**changes) if args.full else HydrationProtocol(**changes)
    rows = read_freesolv(Path(args.data))
    by_id = {r["id"]: r for r in rows}
    if args.ids:
        unknown = [i for i in args.ids if i not in by_id]
        if unknown:
            sys.exit(f"hydration.py: error: unknown FreeSolv ids: {' '.join(unknown)}")
        chosen = [by_id[i] for i in args.ids]
    else:
        chosen = rows if args.full else select(rows, args.molecules, args.max_heavy)
    cache = ChargeCache(args.charge_cache or out / "am1bcc-cache.json")
    sources = force_fields(args.force_field or DEFAULT_FORCE_FIELDS, cache)
    n_states = len(alchemical_states(protocol, "solvent")["lambda_sterics"])
    print(f"{len(chosen)} molecules x {len(sources)} force fields; solvent leg {n_states} states x "
          f"{protocol.iterations} iterations x {protocol.steps_per_iteration * protocol.timestep_fs / 1000:g} ps")

    def compute(label: str, source, item: str, row: dict) -> dict:
        result = gnnff.assign_parameters(row["smiles"], model=source, name=item)
        total = protocol.vacuum_iterations + protocol.iterations
        with progress(total=total, desc=f"{label} {item}", unit="it", leave=False) as bar:
            done = hydration_free_energy(result, protocol, out / "work" / label / item, progress=bar)
        done.update(id=item, smiles=row["smiles"], name=row["name"], force_field=label,
                    exp_kcal=row["dG_hyd_exp_kcal_mol"])
        return done

    def line(label: str, item: str, row: dict, done: dict) -> str:
        seconds = sum(leg["seconds"] for leg in done["legs"].values())
        return (f"{label:>20} {item:<16} {row['name'][:28]:<28} calc {done['dG_kcal']:7.2f} +- "
                f"{done['dG_err_kcal']:.2f}  exp {row['dG_hyd_exp_kcal_mol']:7.2f}  "
                f"gaff {row['dG_hyd_gaff_calc_kcal_mol']:7.2f}  ({seconds / 60:.1f} min"
                f"{', committed baseline' if 'baseline' in done else ''})")

    results, failed = run_side_by_side({row["id"]: row for row in chosen}, sources, store, asdict(protocol),
                                       compute, describe=lambda row: row["name"], line=line)
    report(results, by_id, out, args.validate)
    report_failures(out / "failed.txt", failed)


def report(results: dict[str, dict[str, dict]], rows: dict[str, dict], out: Path, gaff: bool) -> None:
    """Print and save the statistics of every force field on the molecules all of them finished."""
    common = common_items(results)
    columns = {label: [results[label][i]["dG_kcal"] for i in common] for label in results}
    if gaff:
        columns["FreeSolv GAFF calc"] = [rows[i]["dG_hyd_gaff_calc_kcal_mol"] for i in common]
    exp = [rows[i]["dG_hyd_exp_kcal_mol"] for i in common]
    lines = [f"{len(common)} molecules finished by every force field (kcal/mol, 95 % bootstrap intervals)",
             f"{'force field':>22} {'RMSE':>20} {'MAE':>20} {'MSE (calc-exp)':>22} {'R^2':>20}"]
    table = []
    for label, calc in columns.items():
        stats = bootstrap_statistics(calc, exp)
        cells = [f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in stats.values()]
        lines.append(f"{label:>22} {cells[0]:>20} {cells[1]:>20} {cells[2]:>22} {cells[3]:>20}")
        table.append({"force_field": label, "molecules": len(common),
                      **{f"{name}{suffix}": value for name, triple in stats.items()
                         for suffix, value in zip(("", "_low", "_high"), triple)}})
    lines += against_baseline(columns, exp, {"RMSE": (rmse, "{:+.2f}", " kcal/mol")}, table)
    if gaff and "sage" in results:
        dev = [(results["sage"][i]["dG_kcal"] - rows[i]["dG_hyd_gaff_calc_kcal_mol"],
                np.hypot(results["sage"][i]["dG_err_kcal"], rows[i]["dG_hyd_gaff_calc_uncertainty"])) for i in common]
        within = sum(abs(d) <= 2 * e + 0.5 for d, e in dev)
        lines.append(f"validation: Sage - FreeSolv GAFF calc: mean {np.mean([d for d, _ in dev]):+.2f}, "
                     f"RMSD {np.sqrt(np.mean([d * d for d, _ in dev])):.2f} kcal/mol; "
                     f"{within}/{len(dev)} within 2 sigma + 0.5 kcal/mol (LJ differs: Sage vs GAFF)")
    print("\n".join(lines))
    if table:
        write_csv(out / "summary.csv", table)
    plot({k: {i: v[i] for i in common} for k, v in results.items()}, rows, out / "hydration.png", gaff)
    print(f"wrote {out / 'summary.csv'} and {out / 'hydration.png'}")


if __name__ == "__main__":
    run(main)
