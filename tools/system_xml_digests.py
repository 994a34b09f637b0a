"""Fingerprint the System XML that gnnff writes, to prove a refactor changed no behaviour.

Parametrizes the first N distinct molecules (by canonical isomeric SMILES, first conformer
of each) of the OpenFF industry set with each named model, serialises every System with
:func:`gnnff.to_xml`, and writes one SHA-256 per molecule and model to a JSON file. Run it
before and after a change and compare the two files with ``--compare``::

    python tools/system_xml_digests.py -o before.json            # on the old commit
    python tools/system_xml_digests.py -o after.json --compare before.json

Character-identical XML gives identical digests; ``--keep DIR`` also writes the XML files,
to diff a mismatch.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

from rdkit import Chem

SHARED = Path(os.environ.get("GNNFF_SHARED", Path(__file__).resolve().parents[2] / "shared"))
INDUSTRY = SHARED / "data" / "industry-benchmark-dev.sdf.gz"


def first_distinct(count: int) -> list[tuple[str, Chem.Mol]]:
    """The first ``count`` distinct molecules of the industry set, first conformer each."""
    seen: dict[str, Chem.Mol] = {}
    with gzip.open(INDUSTRY, "rb") as handle:
        for mol in Chem.ForwardSDMolSupplier(handle, removeHs=False):
            if mol is None:
                continue
            key = Chem.MolToSmiles(mol)
            if key not in seen:
                seen[key] = mol
                if len(seen) == count:
                    break
    return list(seen.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="JSON file of digests to write")
    parser.add_argument("--models", nargs="+", default=["default", "sage:charges=am1bcc-fast", "sage@3"],
                        help="NAME[:OPTION=VALUE,...][@COUNT]: a model name ('default' = the shipped default "
                             "model), its options, and how many of the molecules (default: all); the default "
                             "list runs Sage's full AM1-BCC (minutes per molecule) on the first 3 only")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--compare", help="a digest JSON written before; exit 1 on any difference")
    parser.add_argument("--keep", help="folder to write each System XML into")
    args = parser.parse_args(argv)

    import gnnff  # noqa: PLC0415 (a script, importing the public API)

    molecules = first_distinct(args.count)
    digests: dict[str, dict[str, str]] = {}
    for model in args.models:
        spec, _, count = model.partition("@")
        name, _, options = spec.partition(":")
        kwargs = dict(item.split("=", 1) for item in options.split(",") if item)
        name = None if name == "default" else name
        digests[model] = {}
        chosen = molecules[:int(count)] if count else molecules
        for index, (smiles, mol) in enumerate(chosen):
            try:
                xml = gnnff.to_xml(gnnff.parametrize(Chem.Mol(mol), model=name, **kwargs))
            except gnnff.GnnffError as err:
                xml = f"ERROR {type(err).__name__}: {err}"
            digests[model][smiles] = hashlib.sha256(xml.encode()).hexdigest()
            if args.keep:
                folder = Path(args.keep) / model.replace(":", "_").replace("=", "-").replace(",", "_")
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{index:03d}.xml").write_text(xml)
            print(f"{model}: {index + 1}/{len(chosen)}", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    Path(args.output).write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        bad = 0
        for model, table in digests.items():
            differ = [s for s, d in table.items() if before.get(model, {}).get(s) != d]
            bad += len(differ)
            print(f"{model}: {len(table) - len(differ)}/{len(table)} identical"
                  + (f"; first differing: {differ[0]}" if differ else ""))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
