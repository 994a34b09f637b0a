"""Bespoke fine-tuning on drug-like ligands the base model never saw: held-out torsion
scans and the gas-phase benchmark, base vs tuned.

    python benchmarks/training/finetune.py [--ligands 10] [--scans 1|auto] [--workers 2] [-o runs/finetune]
    python benchmarks/training/finetune.py --labelled-only                # those of the 10 labelled so far
    python benchmarks/training/finetune.py --dev --tag NAME [settings...] # choose settings on 8 other ligands
    python benchmarks/training/finetune.py --scans auto --hold-out-scans  # every torsion, the last of each held out
    python benchmarks/training/finetune.py --labeler-baseline             # ANI-2x's own gas-phase numbers too

Ligands (:data:`LIGANDS`): molecules of the shared industry set in gnnff-industry-v0's
test split (the split of ``recipes/default/train.yaml``: seed 0, 10 % validation, 10 %
test, by molecule), inside ANI-2x's domain (neutral, H C N O F S Cl), 18-24 heavy atoms,
2-4 rotatable torsions (:func:`gnnff.train.scan.rotatable_torsions`); sorted by SMILES and
taken at even spacing. Each ligand's lowest-energy DFT conformer starts its drives.

Runs ``gnnff.train.finetune.finetune`` on them together (one series model; ANI-2x labels;
every other grid point of each 15-degree scan held out), then the OpenFF
industry-benchmark protocol (``gnnff.train.benchmark``) on every DFT conformer of the
same ligands with the base and the tuned model. Prints the held-out profile RMSE, the
gas-phase numbers and the cost per ligand; writes ``OUT/results.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import INDUSTRY_SDF, ROOT, write_json  # noqa: E402

ANI_ELEMENTS = {1, 6, 7, 8, 9, 16, 17}


def split_keys(part: int = 2) -> set[str]:
    """Molecule keys of one part of the base model's split of the industry set
    (recipes/default/train.yaml's: 0 training, 1 validation, 2 test)."""
    from gnnff.train.data import drop_broken, drop_distorted, read_dataset, split_by_molecule
    from gnnff.units import KCAL_TO_KJ

    # the filters and spread bound of TrainConfig's defaults, as the training run applied them
    data = drop_broken(drop_distorted(read_dataset(INDUSTRY_SDF, dataset="industry-dev")), 62.5 * KCAL_TO_KJ)
    return {d.key for d in split_by_molecule(data, (0.8, 0.1, 0.1), 0)[part]}


#: The ligands, fixed: chosen once (2026-12-03) from the base model's test split by the
#: rule of :func:`eligible` with the torsion finder of that day, which still counted
#: bonds to sp atoms (the aryl-alkyne bond of the first ligand; it is not driven now),
#: then 10 at even spacing in SMILES order.
LIGANDS = (
    "C#Cc1cccc(Nc2nc3ccccc3c3cnccc23)c1",
    "CCc1cc2cc([C@H](O)c3ccc4c(c3)OCO4)ccc2nc1O",
    "COc1cc(-c2nc(C)nc3[nH]cc(C#N)c23)c(Cl)cc1Cl",
    "COc1nc(N2CCNCC2)cc(-c2ccccc2)c1C(F)(F)F",
    "Cc1cc(C)nc(Sc2c(F)c(F)c(S(N)(=O)=O)c(F)c2F)n1",
    "Cc1cnc(Cn2ccc3c(Cl)nc(N)nc32)c(C)c1Cl",
    "N#CCc1ccc(Cl)c(-c2ccc3[nH]c(O)nc3c2)c1Cl",
    "O=C(C1=C(Cl)CCN(Cc2ccccc2)CC1)c1ccccc1",
    "O=C1CN=C(n2cnc(C3CC3)c2)C=C2c3ccccc3CCN12",
    "Oc1nnc(C2CCN(c3ccc(Cl)nn3)CC2)c2ccccc12",
)


def dev_ligands(molecules, n: int = 8) -> list[str]:
    """Ligands to choose settings on, never the benchmark's: validation-split molecules
    meeting :func:`eligible`, ``n`` at even spacing in SMILES order."""
    pool = sorted(m.key for m in molecules if eligible(m))
    return [pool[round(i * (len(pool) - 1) / max(n - 1, 1))] for i in range(n)]


def more_ligands(molecules, n: int, taken: tuple[str, ...] = LIGANDS) -> list[str]:
    """``n`` further test-split ligands meeting :func:`eligible`, not among ``taken``, at
    even spacing in SMILES order (for a benchmark wider than the fixed ten)."""
    pool = sorted(m.key for m in molecules if m.key not in taken and eligible(m))
    if n > len(pool):
        raise SystemExit(f"only {len(pool)} more eligible ligands in the test split, not {n}")
    return [pool[round(i * (len(pool) - 1) / max(n - 1, 1))] for i in range(n)] if n else []


def eligible(molecule) -> bool:
    """Inside ANI-2x's domain, 18-24 heavy atoms, 2-4 rotatable torsions."""
    from gnnff.train.scan import rotatable_torsions

    mol = molecule.mol
    charged = any(a.GetFormalCharge() for a in mol.GetAtoms())
    if {a.GetAtomicNum() for a in mol.GetAtoms()} - ANI_ELEMENTS or charged:
        return False
    return 18 <= mol.GetNumHeavyAtoms() <= 24 and 2 <= len(rotatable_torsions(mol)) <= 4


def labeler_protocol(labeler, molecule, cache: Path) -> list:
    """The industry protocol with the labeler itself as the force field: each DFT conformer
    minimised with it (geomeTRIC, unconstrained), measured as the MM models are. Where a
    model fitted to the labeler can get at best. Cached per molecule in ``cache`` (JSON)."""
    from gnnff.threads import serial_numerics
    from gnnff.train.benchmark import ConformerResult, measure
    from gnnff.train.scan import Atoms, constrained_minimise, labeler_energy
    from gnnff.units import ANGSTROM_TO_NM, KJ_TO_KCAL

    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if molecule.key not in known:
        mol = molecule.mol
        energy = labeler_energy(labeler, np.array([a.GetAtomicNum() for a in mol.GetAtoms()]),
                                Chem.GetFormalCharge(mol))
        with serial_numerics():
            minimised = [constrained_minimise(energy, Atoms.of(mol), c.GetPositions() * ANGSTROM_TO_NM, None, None)
                         for c in mol.GetConformers()]
        results = measure(molecule, [(x, e * KJ_TO_KCAL) for x, e in minimised])
        known[molecule.key] = [[r.record_id, r.rmsd, r.tfd, r.dde] for r in results]
        cache.write_text(json.dumps(known, indent=1) + "\n")
    return [ConformerResult(rid, molecule.key, rmsd, tfd, dde) for rid, rmsd, tfd, dde in known[molecule.key]]


def write_ligands(chosen, path: Path) -> None:
    writer = Chem.SDWriter(str(path))
    for m in chosen:
        mol = Chem.Mol(m.mol)
        best = int(np.argmin(m.qm_energies))
        conformer = Chem.Conformer(mol.GetConformer(best))
        mol.RemoveAllConformers()
        mol.AddConformer(conformer, assignId=True)
        mol.SetProp("_Name", m.key)
        writer.write(mol)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ligands", type=int, default=10,
                        help="the first N of LIGANDS; beyond ten, more test-split ligands by the same rule")
    parser.add_argument("--dev", action="store_true",
                        help="the development set instead (validation-split ligands, dev_ligands): for choosing "
                             "settings without looking at the benchmark's ligands")
    parser.add_argument("--scans", default="1", help="torsions per ligand: N or auto (all; default: 1)")
    parser.add_argument("--step", type=float, default=15.0)
    parser.add_argument("--steps", type=int, default=None, help="fit steps (default: finetune's)")
    parser.add_argument("--pull", type=float, default=None, help="pull weight (default: finetune's)")
    parser.add_argument("--anchor", type=float, default=None, help="anchor weight (default: finetune's)")
    parser.add_argument("--learning-rate", type=float, default=None, help="(default: finetune's)")
    parser.add_argument("--terms", default=None, help="valence heads trained, comma-separated (default: all)")
    parser.add_argument("--tag", default="", help="suffix of this run's model, report and results files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--labelled-only", action="store_true",
                        help="only the chosen ligands already labelled in OUT/work (a preliminary result)")
    parser.add_argument("--profile", type=float, default=None, help="relaxed-profile loss weight (default: finetune's)")
    parser.add_argument("--energies", type=float, default=None,
                        help="weight of energies at the labeler's geometries (default: finetune's)")
    parser.add_argument("--forces", type=float, default=None, help="force loss weight (default: finetune's)")
    parser.add_argument("--samples", type=int, default=None, help="off-equilibrium samples (default: finetune's)")
    parser.add_argument("--conformers", type=int, default=None,
                        help="conformers per ligand minimised with the labeler (default: finetune's)")
    parser.add_argument("--schedule", default=None, help="cosine or constant (default: finetune's)")
    parser.add_argument("--tune", default=None, help="heads or torsions (default: finetune's)")
    parser.add_argument("--no-relax-conformers", action="store_true",
                        help="conformers fitted at the labeler's minima only, not as relaxed energies")
    parser.add_argument("--labeler-baseline", action="store_true",
                        help="also run the gas-phase protocol with the labeler itself (minimised with geomeTRIC; "
                             "cached in OUT/labeler-protocol.json)")
    parser.add_argument("--hold-out-scans", action="store_true",
                        help="also hold out each ligand's last scan (of two or more) whole")
    parser.add_argument("-o", "--output", default=None, help="default: runs/finetune (runs/finetune-dev with --dev)")
    args = parser.parse_args()

    from gnnff.sources.gnn import GNNSource
    from gnnff.sources.models import get_model
    from gnnff.train.benchmark import paired_differences, read_benchmark_sdf, run_protocol, summarize
    from gnnff.train.finetune import FinetuneSettings, finetune

    out = Path(args.output or ROOT / "runs" / ("finetune-dev" if args.dev else "finetune"))
    out.mkdir(parents=True, exist_ok=True)
    keys = split_keys(1 if args.dev else 2)
    molecules = read_benchmark_sdf(INDUSTRY_SDF, keys=keys)
    by_key = {m.key: m for m in molecules}
    ligands = dev_ligands(molecules) if args.dev else LIGANDS
    missing = [k for k in ligands if k not in by_key]
    if missing:
        raise SystemExit(f"not in the {'validation' if args.dev else 'test'} split: {missing}")
    if not args.dev and args.ligands > len(LIGANDS):  # the fixed ten, then more by the same rule
        ligands = LIGANDS + tuple(more_ligands(molecules, args.ligands - len(LIGANDS)))
    chosen = [by_key[k] for k in ligands[:args.ligands]]
    for m in chosen:
        if not eligible(m):
            print(f"  note: {m.key} no longer meets the selection rule")
    write_ligands(chosen, out / "ligands.sdf")
    overrides = {k: v for k, v in (("steps", args.steps), ("pull", args.pull), ("learning_rate", args.learning_rate),
                                   ("profile", args.profile), ("anchor", args.anchor), ("energies", args.energies),
                                   ("forces", args.forces),
                                   ("samples", args.samples), ("conformers", args.conformers),
                                   ("schedule", args.schedule), ("tune", args.tune),
                                   ("relax_conformers", False if args.no_relax_conformers else None),
                                   ("hold_out_scans", args.hold_out_scans or None),
                                   ("terms", tuple(args.terms.split(",")) if args.terms else None)) if v is not None}
    settings = FinetuneSettings(scans=None if args.scans == "auto" else int(args.scans), step=args.step, **overrides)
    if args.labelled_only:
        from gnnff.train.finetune import labelled
        from gnnff.train.finetune.pipeline import _read

        ready = {m.GetProp("_Name") for m in _read([out / "ligands.sdf"])[0]
                 if labelled(m, out / "work" / "labels" / settings.labeler, settings)}
        chosen = [m for m in chosen if m.key in ready]
        write_ligands(chosen, out / "ligands-labelled.sdf")
    source = out / ("ligands-labelled.sdf" if args.labelled_only else "ligands.sdf")
    tag = ("-labelled" if args.labelled_only else "") + (f"-{args.tag}" if args.tag else "")
    n = len(chosen)
    print(f"{len(keys)} {'validation' if args.dev else 'test'}-split molecules; {n} ligands:")
    for m in chosen:
        print(f"  {m.key}  ({m.mol.GetNumHeavyAtoms()} heavy atoms, {m.mol.GetNumConformers()} DFT conformers)")
    start = time.perf_counter()
    report = out / "work" / f"report{tag}"
    summary = finetune([source], out / f"series{tag}.pt", settings=settings, work=out / "work", report=report,
                       overwrite=True, workers=args.workers)
    wall = time.perf_counter() - start

    base, tuned = get_model(None), GNNSource(out / f"series{tag}.pt")
    gas = {"base": [], "tuned": []}
    for m in chosen:
        gas["base"] += run_protocol(base, m)
        gas["tuned"] += run_protocol(tuned, m)
    if args.labeler_baseline:
        from gnnff.progress import progress
        from gnnff.train.labelers import get_labeler

        labeler = get_labeler(settings.labeler)
        gas[settings.labeler] = [r for m in progress(chosen, desc=f"{settings.labeler} protocol", unit="mol")
                                 for r in labeler_protocol(labeler, m, out / "labeler-protocol.json")]
    rows = summarize(gas)
    scans = json.loads((report / "summary.json").read_text())
    import csv

    per_scan = list(csv.DictReader(open(report / "scans.csv")))
    labelling = sum(float(r["labelling_seconds"]) for r in per_scan)
    conformer_csv = report / "conformers.csv"
    per_molecule = list(csv.DictReader(open(conformer_csv))) if conformer_csv.is_file() else []
    conformer_seconds = sum(float(r["labelling_seconds"]) for r in per_molecule)
    labelling += conformer_seconds
    held = summary["held_out_rmse"]
    drop = 1.0 - held["tuned"] / held["base"]
    in_fit = [r for r in per_scan if r["scan_held_out"] != "True"]
    print(f"\nheld-out torsion-profile RMSE vs ANI-2x ({sum(int(r['held_out']) for r in in_fit)} points of "
          f"{len(in_fit)} fitted scans): base {held['base']:.2f}, tuned {held['tuned']:.2f} kcal/mol "
          f"({100 * drop:.0f} % lower)")
    if summary["held_out_scans"]:
        whole = summary["held_out_scan_rmse"]
        print(f"held-out whole scans ({summary['held_out_scans']}, torsions never fitted): base {whole['base']:.2f}, "
              f"tuned {whole['tuned']:.2f} kcal/mol ({100 * (whole['tuned'] / whole['base'] - 1):+.0f} %)")
    fitted = summary["fitted_rmse"]
    print(f"fitted points: base {fitted['base']:.2f}, tuned {fitted['tuned']:.2f} kcal/mol")
    if per_molecule:
        c = summary["conformer_rmse"]
        print(f"relaxed conformer energies ({sum(int(r['conformers']) for r in per_molecule)} labeler minima, fitted): "
              f"base {c['base']:.2f}, tuned {c['tuned']:.2f} kcal/mol; their labelling {conformer_seconds:.0f} s")
    better = sum(float(r["tuned_held_out_rmse"]) < float(r["base_held_out_rmse"]) for r in per_scan)
    print(f"scans whose held-out RMSE went down: {better} of {len(per_scan)} (held-out points; whole held-out "
          "scans: all their points)")
    print("\ngas phase, the ligands' DFT conformers (industry protocol; 95 % bootstrap intervals over molecules):")
    for r in rows:
        print(f"  {r['force_field']:>7}: median RMSD {r['rmsd_median']:.3f} [{r['rmsd_median_lo']:.3f}, "
              f"{r['rmsd_median_hi']:.3f}] A, median TFD {r['tfd_median']:.4f}, ddE RMSE {r['dde_rmse']:.2f} "
              f"[{r['dde_rmse_lo']:.2f}, {r['dde_rmse_hi']:.2f}] kcal/mol ({r['conformers']} conformers)")
    paired = paired_differences(gas, "base", "tuned")
    print("   tuned - base, paired over the same molecules (95 % interval; positive = worse): "
          + ", ".join(f"{label} {v:+.4f} [{lo:+.4f}, {hi:+.4f}]" for label, (v, lo, hi) in
                      (("median RMSD", paired["rmsd_median"]), ("median TFD", paired["tfd_median"]),
                       ("ddE RMSE", paired["dde_rmse"]))))
    seconds = summary["seconds"]
    print(f"\ncost: {wall:.0f} s wall for {n} ligands with {args.workers} workers ({wall / n / 60:.1f} min per "
          f"ligand); labelling {labelling:.0f} s of worker time ({labelling / n / 60:.1f} min per ligand), "
          f"fitting {seconds['fitting']:.0f} s, report {seconds['report']:.0f} s")
    results = {"ligands": [m.key for m in chosen], "labelled_only": args.labelled_only,
               "finetune": scans, "gas_phase": rows, "paired_tuned_minus_base": paired,
               "held_out_drop": drop, "wall_seconds": wall, "labelling_worker_seconds": labelling,
               "workers": args.workers}
    write_json(out / f"results{tag}.json", results)


if __name__ == "__main__":
    main()
