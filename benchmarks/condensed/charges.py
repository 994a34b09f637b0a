"""Partial charges of gnnff models against full AM1-BCC, beside OpenFF NAGL and AM1-BCC without sqm optimisation.

    python benchmarks/condensed/charges.py                       # 40 SPICE PubChem molecules (12 charged)
    python benchmarks/condensed/charges.py --molecules 200 --charged 0.3 --workers 2

Molecules: ../shared/data/spice-pubchem-sets1-6.smi.gz minus every molecule of the industry
set (the shipped model's training data), elements H C N O F P S Cl Br, at most
``--max-heavy`` heavy atoms, drawn with a fixed seed, ``--charged`` of them ions or
zwitterions. Reference: AM1-BCC through the OpenFF toolkit + AmberTools sqm with its AM1
geometry optimisation, on one ETKDG conformer, cached in OUT/am1bcc-cache.json (5-60 s
per molecule, some minutes; the cache is shared with hydration.py / liquids.py via
--charge-cache). References computed before are committed in benchmarks/references/
(``--references``, merged into the cache first; ``--write-references`` writes them).
Compared: each ``--model``; ``am1bcc-fast`` (antechamber, sqm maxcyc=0: the bulk-label
candidate); each ``--charges`` method (``am1bcc-mmff``: the gnnff-v1 label); OpenFF NAGL
1.0.0 when installed (``pip install 'gnnff[bench]'``).

Per method: per-atom RMSE with a 95 % bootstrap interval over molecules, largest error,
slope of q vs q_ref through 0, dipole-error RMSE (D, about the centre of mass), GB (OBC2,
mbondi2) polarization-energy bias and RMSE (kcal/mol), largest spread over symmetry- and
resonance-equivalent atoms, largest net-charge error, median time per molecule; per-element
RMSEs. Results per molecule go to OUT/results/ (resume); OUT/charges.png, OUT/summary.csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

import gnnff
from gnnff.chem.molecule import plain_smiles, positions_nm, with_conformer
from gnnff.condensed.charges import compare_charges, nagl_charges, summarize_metrics
from gnnff.condensed.common import (
    ChargeCache,
    ResultStore,
    error_line,
    force_field_label,
)
from gnnff.errors import GnnffError
from gnnff.progress import progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import (  # noqa: E402
    INDUSTRY_SDF,
    REFERENCES,
    SPICE_SMILES,
    bootstrap_interval,
    industry_keys,
    png,
    read_smiles,
    report_failures,
    run,
    write_csv,
)

ELEMENTS = {1, 6, 7, 8, 9, 15, 16, 17, 35}
#: Full AM1-BCC references computed once (hours of sqm) and committed: ``--write-references``.
REFERENCES_FILE = REFERENCES / "am1bcc-spice.json.gz"


def select(path: Path, exclude: set[str], n: int, charged_fraction: float, max_heavy: int, seed: int) -> list[str]:
    """``n`` SMILES from the list, ``charged_fraction`` of them charged, none in ``exclude``."""
    neutral, charged = [], []
    for smiles in read_smiles(path):
        mol = Chem.MolFromSmiles(smiles)
        if mol is None or mol.GetNumHeavyAtoms() > max_heavy or plain_smiles(smiles) in exclude:
            continue
        if any(a.GetAtomicNum() not in ELEMENTS for a in mol.GetAtoms()) or len(Chem.GetMolFrags(mol)) > 1:
            continue
        has_charges = any(a.GetFormalCharge() for a in mol.GetAtoms())
        (charged if has_charges else neutral).append(smiles)
    rng = np.random.default_rng(seed)
    n_charged = min(len(charged), int(round(n * charged_fraction)))
    picks = [charged[i] for i in rng.choice(len(charged), n_charged, replace=False)]
    picks += [neutral[i] for i in rng.choice(len(neutral), min(len(neutral), n - n_charged), replace=False)]
    return picks


def plot(per_method: dict[str, list[dict]], path: Path) -> None:
    methods = list(per_method)
    colors = {"C": "0.3", "N": "tab:blue", "O": "tab:red", "S": "goldenrod", "P": "tab:orange", "F": "tab:green",
              "Cl": "tab:olive", "Br": "tab:brown", "H": "0.7"}
    with png(path, ncols=len(methods) + 1, figsize=(3.6 * (len(methods) + 1), 3.8)) as (fig, axes):
        for ax, method in zip(axes, methods):
            for m in per_method[method]:
                for symbol, q, ref in zip(m["elements"], m["charges"], m["reference"]):
                    ax.plot(ref, q, ".", ms=3, color=colors.get(symbol, "k"), alpha=0.6)
            summary = summarize_metrics(per_method[method])
            ax.plot([-1.5, 1.8], [-1.5, 1.8], "k-", lw=0.6)
            ax.set_title(f"{method}\nRMSE {summary['rmse']:.3f} e, slope {summary['slope']:.2f}", fontsize=9)
            ax.set_xlabel("AM1-BCC charge (e)")
            ax.set_ylabel("model charge (e)")
        ax = axes[-1]
        for method in methods:
            gb = [(m["gb_ref"], m["gb"]) for m in per_method[method]]
            ax.plot(*zip(*gb), "o", ms=3, alpha=0.7, label=method)
        lo = min(min(m["gb_ref"] for m in v) for v in per_method.values()) - 5
        ax.plot([lo, 0], [lo, 0], "k-", lw=0.6)
        ax.set_xlabel("GB polarization, AM1-BCC (kcal/mol)")
        ax.set_ylabel("GB polarization, model (kcal/mol)")
        ax.legend(fontsize=7)


def method_charges(method: str, smiles: str, mol: Chem.Mol) -> tuple[np.ndarray, float]:
    """Charges of ``mol`` by ``method`` (a gnnff model, a charge method of
    ``gnnff.sources.charges.CHARGE_METHODS`` or 'nagl') and seconds taken."""
    start = time.perf_counter()
    from gnnff.sources.charges import CHARGE_METHODS, assign_charges

    if method == "nagl":
        charges = nagl_charges(mol)
    elif method in CHARGE_METHODS:
        charges = assign_charges(mol, method)
    else:
        result = gnnff.assign_parameters(mol, model=method, name=smiles)
        charges = result.parameters.nonbonded.charge.detach().double().numpy()
    return charges, time.perf_counter() - start


def write_references(path: str | None, cache: ChargeCache, chosen: list[str]) -> None:
    """``--write-references``: the cached references of the chosen molecules, gzipped JSON."""
    if path:
        written = cache.snapshot(path, [gnnff.load_molecule(s) for s in chosen])
        print(f"{path}: {written} reference charge sets")


def main() -> None:
    RDLogger.DisableLog("rdApp.*")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, help="gnnff model name or .pt (repeatable)")
    parser.add_argument("--molecules", type=int, default=40)
    parser.add_argument("--charged", type=float, default=0.3, help="fraction of charged molecules")
    parser.add_argument("--max-heavy", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--charges", action="append", default=[], metavar="METHOD",
                        help="also compare this charge method of gnnff's (e.g. am1bcc-mmff, the gnnff-v1 "
                             "label; mmff94), repeatable")
    parser.add_argument("--no-nagl", action="store_true")
    parser.add_argument("--no-fast", action="store_true", help="leave out am1bcc-fast")
    parser.add_argument("--data", default=str(SPICE_SMILES))
    parser.add_argument("--exclude", default=str(INDUSTRY_SDF),
                        help="SDF of the training molecules to leave out")
    parser.add_argument("--charge-cache", help="AM1-BCC cache (default: OUT/am1bcc-cache.json)")
    parser.add_argument("--references", default=str(REFERENCES_FILE),
                        help="committed reference charges merged into the cache first (default: %(default)s)")
    parser.add_argument("--write-references", metavar="JSON_GZ",
                        help="after the run, write the cached references of the chosen molecules here")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes computing the missing AM1-BCC references first (each runs sqm)")
    parser.add_argument("--references-only", action="store_true",
                        help="fill the reference cache and stop (run the comparison later)")
    parser.add_argument("-o", "--output", default="benchmark-charges")
    args = parser.parse_args()
    out = Path(args.output)
    store = ResultStore(out / "results")
    cache = ChargeCache(args.charge_cache or out / "am1bcc-cache.json", method="am1bcc")
    if args.references and Path(args.references).is_file():
        added = cache.merge(args.references)
        if added:
            print(f"{added} reference charge sets from {args.references}")
    from gnnff.sources.models import DEFAULT_MODEL

    methods = list(args.model or [DEFAULT_MODEL])
    methods += [] if args.no_fast else ["am1bcc-fast"]
    from gnnff.sources.charges import CHARGE_METHODS

    unknown = [m for m in args.charges if m not in CHARGE_METHODS or m == "am1bcc"]
    if unknown:
        parser.error(f"--charges {unknown[0]}: not a charge method to compare; known: "
                     f"{', '.join(m for m in CHARGE_METHODS if m != 'am1bcc')} (am1bcc is the reference)")
    methods += [m for m in args.charges if m not in methods]
    if not args.no_nagl:
        try:
            import openff.nagl  # noqa: F401
            methods.append("nagl")
        except ImportError as err:
            print(f"NAGL not available ({err}); install gnnff[bench] to compare with it", file=sys.stderr)
    exclude = industry_keys(Path(args.exclude)) if args.exclude else set()
    chosen = select(Path(args.data), exclude, args.molecules, args.charged, args.max_heavy, args.seed)
    n_charged = sum(any(a.GetFormalCharge() for a in Chem.MolFromSmiles(s).GetAtoms()) for s in chosen)
    print(f"{len(chosen)} molecules ({n_charged} charged), "
          f"none of the {len(exclude)} training molecules; methods: {', '.join(methods)}")
    failed: list[str] = []
    no_reference: set[str] = set()  # the parallel fill failed on these: not retried one by one
    if args.workers > 1 or args.references_only:
        failed += cache.fill([with_conformer(gnnff.load_molecule(s, name=s)) for s in chosen], workers=args.workers)
        no_reference = {s for s in chosen if gnnff.load_molecule(s) not in cache}
        if args.references_only:
            write_references(args.write_references, cache, chosen)
            print(f"{len(chosen) - len(no_reference)} of {len(chosen)} references in {cache.path}; "
                  f"{len(failed)} failed")
            for line in failed:
                print(line)
            return
    per_method: dict[str, list[dict]] = {force_field_label(m): [] for m in methods}
    reference_seconds = []
    for k, smiles in enumerate(progress(chosen, desc="charges", unit="mol")):
        key = f"{k:04d}"
        if smiles in no_reference:
            continue
        done = store.load(key)
        if done is None or done.get("smiles") != smiles:
            done = None
        missing = [m for m in methods if done is None or force_field_label(m) not in done["methods"]]
        if missing:  # a new method is computed beside the stored ones
            try:
                mol = with_conformer(gnnff.load_molecule(smiles, name=smiles))
                reference = cache.get(mol)
                x = positions_nm(mol)[0]
                if done is None:
                    done = {"smiles": smiles, "reference_seconds": cache.seconds(mol), "methods": {}}
                for method in missing:
                    charges, seconds = method_charges(method, smiles, mol)
                    metrics = compare_charges(mol, charges, reference, x)
                    metrics.update(charges=charges.tolist(), reference=reference.tolist(), seconds=seconds,
                                   elements=[a.GetSymbol() for a in mol.GetAtoms()])
                    done["methods"][force_field_label(method)] = metrics
            except (GnnffError, ValueError, RuntimeError, FileNotFoundError) as err:
                message = str(err).splitlines()[0] if str(err) else ""
                failed.append(message if message.startswith(smiles) else error_line(smiles, err))
                continue
            store.save(key, done)
        reference_seconds.append(done["reference_seconds"])
        for method in per_method:
            per_method[method].append(done["methods"][method])
    report(per_method, reference_seconds, out)
    write_references(args.write_references, cache, chosen)
    report_failures(out / "failed.txt", failed)


def report(per_method: dict[str, list[dict]], reference_seconds: list[float], out: Path) -> None:
    lines = [(f"{'method':>18} {'RMSE e [95% CI]':>22} {'max':>6} {'slope':>6} {'dipole D*':>9} "
              f"{'GB bias':>8} {'GB RMSE':>8} {'equiv.':>8} {'net':>8} {'s/mol':>8}")]
    rows = []
    for method, metrics in per_method.items():
        if not metrics:
            continue
        s = summarize_metrics(metrics)
        errors = [np.asarray(m["charges"]) - np.asarray(m["reference"]) for m in metrics]
        _, low, high = bootstrap_interval(errors, lambda x: float(np.sqrt(np.mean(x**2))))
        seconds = float(np.median([m["seconds"] for m in metrics]))
        lines.append(f"{method:>18} {s['rmse']:.3f} [{low:.3f}, {high:.3f}] {s['max_abs']:6.2f} {s['slope']:6.2f} "
                     f"{s['dipole_rmse']:9.2f} {s['gb_bias']:+8.2f} {s['gb_rmse']:8.2f} {s['equivalent_spread']:8.3f} "
                     f"{s['net_error']:8.1e} {seconds:8.3f}")
        rows.append({"method": method, **s, "rmse_low": low, "rmse_high": high, "median_seconds": seconds})
    if reference_seconds:
        lines.append(f"{'AM1-BCC (ref.)':>18} median {np.median(reference_seconds):.1f} s/mol, "
                     f"max {max(reference_seconds):.0f} s (OpenFF toolkit + sqm with optimisation)")
    lines.append("* dipole: RMSE of the dipole-vector error over neutral molecules, about the centre of mass")
    elements = sorted({e for v in per_method.values() for m in v for e in m["sq_by_element"]})
    lines.append("per-element RMSE (e): " + " ".join(f"{e:>6}" for e in elements))
    for method, metrics in per_method.items():
        cells = []
        for e in elements:
            sq = sum(m["sq_by_element"].get(e, [0.0, 0])[0] for m in metrics)
            n = sum(m["sq_by_element"].get(e, [0.0, 0])[1] for m in metrics)
            cells.append(f"{np.sqrt(sq / n):6.3f}" if n else f"{'-':>6}")
        lines.append(f"{method:>20} " + " ".join(cells))
    print("\n".join(lines))
    if rows:
        write_csv(out / "summary.csv", rows)
        plot({k: v for k, v in per_method.items() if v}, out / "charges.png")
        print(f"wrote {out / 'summary.csv'} and {out / 'charges.png'}")


if __name__ == "__main__":
    run(main)
