"""Neat-liquid densities: gnnff beside Sage 2.2 + AM1-BCC, same boxes and protocol.

    python benchmarks/condensed/liquids.py                    # CPU default: 8 liquids, 128 molecules, 50 + 100 ps
    python benchmarks/condensed/liquids.py --full --platform CUDA   # the 70 pure liquids, 256 molecules, 200 + 500 ps

Liquids and experimental densities: rows with ``N Components`` = 1 of
../shared/data/sage-physprop-train-v1.csv (Sage's LJ was fitted to these, so matching Sage
is the floor). Each liquid: a packmol box of ``--molecules`` molecules, NPT at the
experimental temperature and pressure (PME, Monte Carlo barostat), equilibration then
production (gnnff/condensed/liquids.py). Results per (force field, liquid) go to
OUT/results/ as they finish and each run checkpoints to OUT/work/, so an interrupted run
resumes. Prints densities with statistical errors, the error statistics vs experiment
with 95 % bootstrap intervals, and writes OUT/liquids.png and OUT/summary.csv.
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
from gnnff.condensed.liquids import LiquidProtocol, liquid_density
from gnnff.progress import progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import (  # noqa: E402
    REFERENCES,
    SHARED_DATA,
    against_baseline,
    bootstrap_statistics,
    common_items,
    force_fields,
    mean_abs_relative_error,
    png,
    read_pure_liquids,
    report_failures,
    rmse,
    run,
    run_side_by_side,
    write_csv,
)

#: CPU default: an alcohol, an alkane, an ester, an aromatic, an amide, a heteroaromatic,
#: an amino alcohol and a chloroalkane (Ids of sage-physprop-train-v1.csv).
DEFAULT_IDS = ("6315", "6316", "6325", "6362", "6331", "6330", "6333", "6366")


def plot(results: dict[str, dict[str, dict]], rows: dict[str, dict], path: Path) -> None:
    ids = sorted(common_items(results), key=lambda i: rows[i]["density"])
    with png(path, figsize=(max(6.0, 0.5 * len(ids) + 2), 4.5)) as (fig, ax):
        x = np.arange(len(ids))
        width = 0.8 / max(1, len(results))
        for k, (label, done) in enumerate(results.items()):
            dev = [100 * (done[i]["density_g_ml"] / rows[i]["density"] - 1) for i in ids]
            err = [100 * done[i]["density_err_g_ml"] / rows[i]["density"] for i in ids]
            rms = np.sqrt(np.mean(np.square(dev))) if dev else float("nan")
            ax.bar(x + (k - (len(results) - 1) / 2) * width, dev, width, yerr=err, label=f"{label} (RMS {rms:.1f} %)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, [rows[i]["smiles"] for i in ids], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("density error vs experiment (%)")
        ax.set_title("Neat-liquid densities (NPT, PME)")
        ax.legend(fontsize=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_benchmark_arguments(parser, output="benchmark-liquids", baseline=REFERENCES / "liquids")
    parser.add_argument("--data", default=str(SHARED_DATA / "sage-physprop-train-v1.csv"))
    parser.add_argument("--ids", nargs="*", help="row Ids to run (default: 8 diverse liquids)")
    parser.add_argument("--all", action="store_true", help="every pure liquid of the file")
    parser.add_argument("--full", action="store_true", help="GPU protocol: every liquid, 256 molecules, 200 + 500 ps")
    parser.add_argument("--molecules", type=int, help=f"molecules per box (default: {LiquidProtocol.molecules})")
    parser.add_argument("--equilibration-ps", type=float,
                        help=f"discarded NPT time (default: {LiquidProtocol.equilibration_ps:g})")
    parser.add_argument("--production-ps", type=float,
                        help=f"sampled NPT time (default: {LiquidProtocol.production_ps:g})")
    args = parser.parse_args()

    out = Path(args.output)
    store = ResultStore(out / "results", baseline=args.baseline)
    settings = {"molecules": 256, "equilibration_ps": 200.0, "production_ps": 500.0} if args.full else {}
    settings.update({k: v for k, v in (("molecules", args.molecules), ("equilibration_ps", args.equilibration_ps),
                                       ("production_ps", args.production_ps)) if v is not None})
    protocol = LiquidProtocol(platform=args.platform, **settings)
    rows = read_pure_liquids(Path(args.data))
    by_id = {r["id"]: r for r in rows}
    ids = [r["id"] for r in rows] if args.all or args.full else list(args.ids or DEFAULT_IDS)
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        sys.exit(f"liquids.py: error: no pure-liquid density with Id {' '.join(unknown)} in {args.data}")
    cache = ChargeCache(args.charge_cache or out / "am1bcc-cache.json")
    sources = force_fields(args.force_field or DEFAULT_FORCE_FIELDS, cache)
    print(f"{len(ids)} liquids x {len(sources)} force fields; {protocol.molecules} molecules, "
          f"{protocol.equilibration_ps:g} ps equilibration + {protocol.production_ps:g} ps production")

    def compute(label: str, source, item: str, row: dict) -> dict:
        result = gnnff.assign_parameters(row["smiles"], model=source, name=row["smiles"])
        total = protocol.equilibration_ps + protocol.production_ps
        with progress(total=total, desc=f"{label} {row['smiles']}", unit="ps", leave=False) as bar:
            done = liquid_density(result, temperature_k=row["temperature_k"], pressure_kpa=row["pressure_kpa"],
                                  density_guess_g_ml=row["density"], protocol=protocol,
                                  workdir=out / "work" / label / item, progress=bar)
        done.update(id=item, smiles=row["smiles"], force_field=label, exp_g_ml=row["density"])
        return done

    def line(label: str, item: str, row: dict, done: dict) -> str:
        return (f"{label:>20} {row['smiles']:<14} {done['density_g_ml']:.4f} +- {done['density_err_g_ml']:.4f} g/mL "
                f"exp {row['density']:.4f} ({100 * (done['density_g_ml'] / row['density'] - 1):+5.1f} %)  "
                f"{done['atoms']} atoms, {done['ns_per_day']:.0f} ns/day, {done['seconds'] / 60:.1f} min"
                f"{', committed baseline' if 'baseline' in done else ''}")

    results, failed = run_side_by_side({i: by_id[i] for i in ids}, sources, store, asdict(protocol), compute,
                                       describe=lambda row: row["smiles"], line=line)
    report(results, by_id, out)
    if "sage" in sources and len(sources) > 1:
        print(lj_deviation(sources, [by_id[i]["smiles"] for i in ids]))
    report_failures(out / "failed.txt", failed)


def lj_deviation(sources: dict, smiles: list[str]) -> str:
    """Per element, the mean relative deviation of each force field's sigma and epsilon from
    Sage 2.2's on the same atoms of these liquids (LJ decides the density)."""
    sage = gnnff.get_model("sage", charges="mmff94")  # the charges play no part here
    lines = ["Lennard-Jones vs Sage 2.2 on the same atoms (mean relative deviation, sigma / epsilon):"]
    for label, source in sources.items():
        if label == "sage":
            continue
        ratios: dict[str, list[tuple[float, float]]] = {}
        for smi in smiles:
            ours = gnnff.assign_parameters(smi, model=source).parameters.nonbonded
            ref = gnnff.assign_parameters(smi, model=sage)
            for atom, s, e, s0, e0 in zip(ref.mol.GetAtoms(), ours.sigma.tolist(), ours.epsilon.tolist(),
                                          ref.parameters.nonbonded.sigma.tolist(), ref.parameters.nonbonded.epsilon.tolist()):
                ratios.setdefault(atom.GetSymbol(), []).append((s / s0 - 1, e / e0 - 1))
        cells = [f"{el} {100 * np.mean([r[0] for r in v]):+.0f}% / {100 * np.mean([r[1] for r in v]):+.0f}%"
                 for el, v in sorted(ratios.items())]
        lines.append(f"{label:>20}: " + ", ".join(cells))
    return "\n".join(lines)


def report(results: dict[str, dict[str, dict]], rows: dict[str, dict], out: Path) -> None:
    """Statistics of every force field on the liquids all of them finished, and each one's
    minus Sage's, paired over the same liquids."""
    common = common_items(results)
    exp = [rows[i]["density"] for i in common]
    columns = {label: [done[i]["density_g_ml"] for i in common] for label, done in results.items()}
    lines = [f"{len(common)} liquids finished by every force field (g/mL; 95 % bootstrap intervals)",
             f"{'force field':>20} {'RMSE':>22} {'MSE (calc-exp)':>24} {'mean |rel. error|':>18}"]
    table = []
    for label, calc in columns.items():
        stats = bootstrap_statistics(calc, exp)
        relative = mean_abs_relative_error(calc, exp) if common else float("nan")
        (r, r_low, r_high), (m, m_low, m_high) = stats["RMSE"], stats["MSE"]
        lines.append(f"{label:>20} {r:.4f} [{r_low:.4f}, {r_high:.4f}] {m:+.4f} [{m_low:+.4f}, {m_high:+.4f}] "
                     f"{relative:17.1f}%")
        table.append({"force_field": label, "liquids": len(common), "RMSE": r, "RMSE_low": r_low,
                      "RMSE_high": r_high, "MSE": m, "MSE_low": m_low, "MSE_high": m_high,
                      "mean_abs_rel_error_percent": relative})
    lines += against_baseline(columns, exp, {"RMSE": (rmse, "{:+.4f}", " g/mL"),
                                             "mean |rel. error|": (mean_abs_relative_error, "{:+.1f}", " %")}, table)
    print("\n".join(lines))
    if table and common:
        write_csv(out / "summary.csv", table)
        plot(results, rows, out / "liquids.png")
        print(f"wrote {out / 'summary.csv'} and {out / 'liquids.png'}")


if __name__ == "__main__":
    run(main)
