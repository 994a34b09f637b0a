"""Nonbonded labels for gnnff-v1 (step 1 of recipes/v1/run.sh): AM1-BCC charges
(``am1bcc-mmff``) and Sage 2.2 Lennard-Jones for SMILES of the shared data.

Molecules: monatomic ions and the inorganic ions of gnnff.chem.ions, the DES370K monomers and
ions (303), then SPICE PubChem (14,621), the training
part of the industry set (split exactly as train.yaml splits it) and the SPICE dipeptides
(677), interleaved 2:2:1 in a fixed shuffled order, so a partial run is a balanced sample.
Held out, never labelled: the industry set's validation and test molecules, every FreeSolv
and Sage physical-property molecule, and the molecules ``benchmarks/condensed/charges.py`` draws
(40 and 200 with its default seed). Output: labels.jsonl beside this file; it resumes.

    python recipes/v1/make_labels.py [--workers 2] [--limit N]
    python recipes/v1/make_labels.py --snapshot      # labels.jsonl -> labels.jsonl.gz (committed)

Labels take hours on 2 cores and a machine is not kept between sessions, so the labels made
so far are committed as ``labels.jsonl.gz``: a run without ``labels.jsonl`` starts from that
snapshot and labels only what it lacks. The run rewrites the snapshot every
``--snapshot-every`` molecules: commit it before a stop (19,223 labels were once lost because
only an early snapshot had been committed).

On a many-core machine without OpenMM/OpenFF (only RDKit, AmberTools, numpy, tqdm), the
charges can be computed apart and merged back here, where Sage's LJ is added:

    python recipes/v1/make_labels.py --write-todo todo.tsv             # here
    python recipes/v1/make_labels.py --todo todo.tsv --shard 0/2 \
        --charges-only --workers 16 -o part0.jsonl                      # there
    python recipes/v1/make_labels.py --merge part0.jsonl               # here
"""

from __future__ import annotations

import argparse
import csv
import gzip
import heapq
import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from gnnff.chem.ions import ION_SMILES
from gnnff.chem.molecule import plain_smiles
from gnnff.train.labels import add_lennard_jones, label_nonbonded

#: Monatomic ions Sage 2.2 has parameters for (its LJ labels them).
MONATOMIC = ("[Li+]", "[Na+]", "[K+]", "[Rb+]", "[Cs+]", "[F-]", "[Cl-]", "[Br-]", "[I-]")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def held_out(shared: Path) -> set[str]:
    keys = set()
    with open(shared / "freesolv-dev.csv", newline="") as handle:
        keys |= {plain_smiles(r["smiles"]) for r in csv.DictReader(handle)}
    with open(shared / "sage-physprop-train-v1.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            keys |= {plain_smiles(row[c]) for c in ("Component 1", "Component 2") if row.get(c)}
    script = ROOT / "benchmarks" / "condensed" / "charges.py"
    spec = importlib.util.spec_from_file_location("charges_benchmark", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    industry = bench.industry_keys(shared / "industry-benchmark-dev.sdf.gz")
    for n in (40, 200):
        drawn = bench.select(shared / "spice-pubchem-sets1-6.smi.gz", industry, n, 0.3, 25, 0)
        keys |= {plain_smiles(s) for s in drawn}
    return keys - {None}


def industry_parts(config_path: Path) -> tuple[list[str], set[str]]:
    """Mapped SMILES of the training molecules and plain keys of validation + test."""
    from gnnff.train.config import load_config
    from gnnff.train.data import drop_broken, read_qcarchive_sdf, split_by_molecule

    config = load_config(config_path)
    sdf = config.data[0]
    data = drop_broken(read_qcarchive_sdf(sdf.path, dataset=sdf.name, limit=sdf.limit))
    fractions = (1.0 - config.split.validation - config.split.test, config.split.validation, config.split.test)
    train, validation, test = split_by_molecule(data, fractions, config.split.seed)
    from gnnff.chem.molecule import mapped_smiles

    return [mapped_smiles(d.mol) for d in train], {plain_smiles(d.key) for d in validation + test}


def smiles_file(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [line.split()[0] for line in handle if line.strip()]


def labelling_order(shared: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """Every ``(smiles, source)`` to label, in the fixed interleaved order, and the plain
    SMILES of every held-out molecule (:func:`held_out` and the industry set's validation
    and test molecules)."""
    exclude = held_out(shared)
    industry, industry_held = industry_parts(HERE / "train.yaml")
    exclude |= industry_held
    rng = np.random.default_rng(0)

    def shuffled(items: list[str], source: str) -> list[tuple[str, str]]:
        kept = [s for s in items if plain_smiles(s) not in exclude]
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
    return order, exclude


def drop_held_out(labels: Path, exclude: set[str]) -> int:
    """Remove from ``labels`` (atomically) the entries of held-out molecules; how many.

    Before 2026-12-06 the hold-out compared the industry set's atom-mapped SMILES with
    unmapped keys, so 75 of its training molecules that are also FreeSolv, physical-property
    or charge-benchmark molecules were queued for labelling; their labels are dropped here.
    """
    from gnnff.files import atomic_write
    from gnnff.train.labels import read_labels

    if not labels.is_file():
        return 0
    entries = list(read_labels(labels))
    kept = [e for e in entries if plain_smiles(e["input"]) not in exclude]
    if len(kept) < len(entries):
        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(entry) + "\n" for entry in kept)

        atomic_write(labels, write)
    return len(entries) - len(kept)


def environments(smiles: str) -> list[tuple]:
    """Each heavy atom's environment: element, formal charge, hydrogens, aromaticity and
    its neighbours' elements with bond orders (sorted)."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return []
    out = []
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 1:
            continue
        neighbours = sorted((b.GetOtherAtom(atom).GetAtomicNum(), b.GetBondTypeAsDouble()) for b in atom.GetBonds())
        out.append((atom.GetAtomicNum(), atom.GetFormalCharge(), atom.GetTotalNumHs(), atom.GetIsAromatic(),
                    tuple(neighbours)))
    return out


def rare_first(todo: list[tuple[str, str]], labelled: list[str]) -> list[tuple[str, str]]:
    """``todo`` reordered greedily so each next molecule is the one whose atom environments
    are rarest among the ``labelled`` SMILES and those picked before it (score: sum over
    heavy atoms of 1 / (1 + count)); the environments a network sees least are the ones its
    charges miss. Counting the picks keeps forty azides from queueing ahead of everything
    else once the first few have made azides common. Ties keep ``todo``'s order."""
    counts: dict[tuple, int] = {}
    for smiles in labelled:
        for env in set(environments(smiles)):
            counts[env] = counts.get(env, 0) + 1
    envs = [environments(s) for s, _ in todo]

    def score(i: int) -> float:
        return sum(1.0 / (1 + counts.get(env, 0)) for env in envs[i])

    # scores only fall as counts grow, so a popped score still at least the next one's is the maximum
    heap = [(-score(i), i) for i in range(len(todo))]
    heapq.heapify(heap)
    out = []
    while heap:
        _, i = heapq.heappop(heap)
        current = score(i)
        if heap and current < -heap[0][0]:
            heapq.heappush(heap, (-current, i))
            continue
        out.append(todo[i])
        for env in set(envs[i]):
            counts[env] = counts.get(env, 0) + 1
    return out


def write_snapshot(labels: Path, snapshot: Path) -> None:
    """``labels`` (JSON Lines, complete lines only) gzipped to ``snapshot``, atomically."""
    from gnnff.files import atomic_write
    from gnnff.train.labels import read_labels

    entries = list(read_labels(labels))  # skips a torn last line

    def write(tmp: str) -> None:
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as handle:
            handle.writelines(json.dumps(entry) + "\n" for entry in entries)

    atomic_write(snapshot, write)
    print(f"{snapshot}: {len(entries)} label entries ({snapshot.stat().st_size / 1e6:.1f} MB)")


def restore_snapshot(snapshot: Path, labels: Path) -> None:
    """Start ``labels`` from the committed snapshot (atomically)."""
    from gnnff.files import atomic_write

    def write(tmp: str) -> None:
        with gzip.open(snapshot, "rt", encoding="utf-8") as source, open(tmp, "w", encoding="utf-8") as out:
            out.writelines(source)

    atomic_write(labels, write)
    print(f"{labels}: started from the snapshot {snapshot.name}")


def main() -> None:
    RDLogger.DisableLog("rdApp.*")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, help="label at most N new molecules in this run")
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("-o", "--output", default=str(HERE / "labels.jsonl"))
    parser.add_argument("--write-todo", metavar="TSV", help="write the molecules not yet in OUTPUT (in order) and stop")
    parser.add_argument("--todo", metavar="TSV", help="label the molecules of a --write-todo file")
    parser.add_argument("--shard", default="0/1", metavar="K/N", help="with --todo: every N-th molecule from K")
    parser.add_argument("--charges-only", action="store_true", help="leave out Sage LJ (add it with --merge)")
    parser.add_argument("--rare-first", action="store_true", help="label first the molecules whose atom "
                        "environments are rarest among those already labelled")
    parser.add_argument("--merge", nargs="+", metavar="JSONL", help="add Sage LJ to these label files "
                        "and append them to OUTPUT")
    parser.add_argument("--snapshot", action="store_true", help="write OUTPUT.gz (the committed snapshot) and stop")
    parser.add_argument("--snapshot-every", type=int, default=500, metavar="N",
                        help="rewrite the committed snapshot labels.jsonl.gz after every N new molecules "
                             "(default 500; 0: never), so a stop can commit it at any time")
    args = parser.parse_args()
    output = Path(args.output)
    snapshot = output.with_name(output.name + ".gz")
    if args.snapshot:
        write_snapshot(output, snapshot)
        return
    if not output.exists() and snapshot.is_file():
        restore_snapshot(snapshot, output)
    if args.merge:
        for part in args.merge:
            counts = add_lennard_jones(part, output)
            print(f"{part} -> {output}: {counts['labelled']} labelled, {counts['failed']} failed, "
                  f"{counts['done']} already there")
        return
    if args.todo:
        with open(args.todo, encoding="utf-8") as handle:
            order = [tuple(line.rstrip("\n").split("\t")) for line in handle if line.strip()]
        k, n = (int(x) for x in args.shard.split("/"))
        order = order[k::n]
    else:
        order, exclude = labelling_order(Path(args.shared))
        dropped = drop_held_out(output, exclude)
        if dropped:
            print(f"{output}: dropped {dropped} entries of held-out molecules")
    if args.rare_first or args.write_todo:
        from gnnff.train.labels import read_labels

        entries = list(read_labels(output))
        seen = {entry["input"] for entry in entries}
        todo = [(s, source) for s, source in order if s not in seen]
        if args.rare_first:
            order = todo = rare_first(todo, [e["input"] for e in entries if "error" not in e])
    if args.write_todo:
        with open(args.write_todo, "w", encoding="utf-8") as handle:
            handle.writelines(f"{s}\t{source}\n" for s, source in todo)
        print(f"{args.write_todo}: {len(todo)} molecules not yet in {output}")
        return
    order = list(order)
    totals = {"labelled": 0, "failed": 0}
    while True:  # in rounds: the committed snapshot is never more than --snapshot-every molecules behind
        made = totals["labelled"] + totals["failed"]
        bounds = [b for b in (args.snapshot_every or None, None if args.limit is None else args.limit - made)
                  if b is not None]
        step = min(bounds) if bounds else None
        if step is not None and step <= 0:
            break
        counts = label_nonbonded(order, output, workers=args.workers, limit=step,
                                 lennard_jones=not args.charges_only)
        totals["labelled"] += counts["labelled"]
        totals["failed"] += counts["failed"]
        if args.snapshot_every and output == HERE / "labels.jsonl" and counts["labelled"]:
            write_snapshot(output, snapshot)
        if step is None or counts["labelled"] + counts["failed"] < step:
            break
    print(f"{output}: {totals['labelled']} labelled, {totals['failed']} failed in this run")


if __name__ == "__main__":
    main()
