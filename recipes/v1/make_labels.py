"""Nonbonded labels for gnnff-v1 (step 1 of recipes/v1/run.sh): AM1-BCC charges
(``am1bcc-mmff``) and Sage 2.2 Lennard-Jones for SMILES of the shared data.

Molecules: monatomic ions and the inorganic ions of gnnff.ions, the DES370K monomers and
ions (303), then SPICE PubChem (14,621), the training
part of the industry set (split exactly as train.yaml splits it) and the SPICE dipeptides
(677), interleaved 2:2:1 in a fixed shuffled order, so a partial run is a balanced sample.
Held out, never labelled: the industry set's validation and test molecules, every FreeSolv
and Sage physical-property molecule, and the molecules ``benchmarks/charges.py`` draws
(40 and 200 with its default seed). Output: labels.jsonl beside this file; it resumes.

    python recipes/v1/make_labels.py [--workers 2] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.util
import itertools
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from gnnff.config import load_config
from gnnff.data import drop_broken, read_qcarchive_sdf, split_by_molecule
from gnnff.ions import ION_SMILES
from gnnff.labels import label_nonbonded

#: Monatomic ions Sage 2.2 has parameters for (its LJ labels them).
MONATOMIC = ("[Li+]", "[Na+]", "[K+]", "[Rb+]", "[Cs+]", "[F-]", "[Cl-]", "[Br-]", "[I-]")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def plain(smiles: str) -> str | None:
    """Stereo-free canonical SMILES without hydrogens (the hold-out identity)."""
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def held_out(shared: Path) -> set[str]:
    keys = set()
    with open(shared / "freesolv-dev.csv", newline="") as handle:
        keys |= {plain(r["smiles"]) for r in csv.DictReader(handle)}
    with open(shared / "sage-physprop-train-v1.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            keys |= {plain(row[c]) for c in ("Component 1", "Component 2") if row.get(c)}
    spec = importlib.util.spec_from_file_location("charges_benchmark", ROOT / "benchmarks" / "charges.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    industry = bench.industry_keys(shared / "industry-benchmark-dev.sdf.gz")
    for n in (40, 200):
        keys |= {plain(s) for s in bench.select(shared / "spice-pubchem-sets1-6.smi.gz", industry, n, 0.3, 25, 0)}
    return keys - {None}


def industry_parts(config_path: Path) -> tuple[list[str], set[str]]:
    """Mapped SMILES of the training molecules and plain keys of validation + test."""
    config = load_config(config_path)
    sdf = config.data[0]
    data = drop_broken(read_qcarchive_sdf(sdf.path, dataset=sdf.name, limit=sdf.limit))
    fractions = (1.0 - config.split.validation - config.split.test, config.split.validation, config.split.test)
    train, validation, test = split_by_molecule(data, fractions, config.split.seed)
    from gnnff.molecule import mapped_smiles

    return [mapped_smiles(d.mol) for d in train], {plain(d.key) for d in validation + test}


def smiles_file(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [line.split()[0] for line in handle if line.strip()]


def main() -> None:
    RDLogger.DisableLog("rdApp.*")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, help="label at most N new molecules in this run")
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("-o", "--output", default=str(HERE / "labels.jsonl"))
    args = parser.parse_args()
    shared = Path(args.shared)
    exclude = held_out(shared)
    industry, industry_held = industry_parts(HERE / "train.yaml")
    exclude |= industry_held
    rng = np.random.default_rng(0)

    def shuffled(items: list[str], source: str) -> list[tuple[str, str]]:
        kept = [s for s in items if plain(s) not in exclude]
        return [(kept[i], source) for i in rng.permutation(len(kept))]

    des = shuffled(smiles_file(shared / "spice-des-monomers.smi"), "spice-des-monomers")
    pubchem = shuffled(smiles_file(shared / "spice-pubchem-sets1-6.smi.gz"), "spice-pubchem")
    train = shuffled(industry, "industry-train")
    peptides = shuffled(smiles_file(shared / "spice-dipeptides.smi"), "spice-dipeptides")
    print(f"held out {len(exclude)} molecules; to label: {len(des)} DES monomers, {len(pubchem)} PubChem, "
          f"{len(train)} industry-train, {len(peptides)} dipeptides")
    order = [(s, "ions") for s in (*MONATOMIC, *ION_SMILES.values())] + des
    streams = [iter(pubchem), iter(train), iter(peptides)]
    pattern = [0, 1, 0, 1, 2]
    for k in itertools.cycle(pattern):
        if all(s is None for s in streams):
            break
        if streams[k] is None:
            continue
        item = next(streams[k], None)
        if item is None:
            streams[k] = None
            continue
        order.append(item)
    counts = label_nonbonded(order, args.output, workers=args.workers, limit=args.limit)
    print(f"{args.output}: {counts['labelled']} labelled, {counts['failed']} failed, {counts['done']} already there")


if __name__ == "__main__":
    main()
