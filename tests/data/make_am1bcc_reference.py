"""Write am1bcc-reference.json: full AM1-BCC charges (OpenFF toolkit + AmberTools sqm, with
sqm's AM1 geometry optimisation, on gnnff's ETKDG conformer) of a few fixed drug-like
molecules, for tests/test_condensed.py. None of them is in the shipped model's training data
(the industry set); the script checks that.

    python tests/data/make_am1bcc_reference.py [--exclude ../shared/data/industry-benchmark-dev.sdf.gz]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gnnff
from gnnff.chem.molecule import plain_smiles, with_conformer
from gnnff.condensed.common import SHARED_DATA, mapped_smiles
from gnnff.sources.charges import assign_charges

HERE = Path(__file__).resolve().parent
MOLECULES = {
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "methylpiperazinium benzamide": "C[NH+]1CCN(CC1)C(=O)c1ccccc1",
    "4-chlorobenzoate": "[O-]C(=O)c1ccc(Cl)cc1",
    "N-phenylmethanesulfonamide": "CS(=O)(=O)Nc1ccccc1",
    "2-methylimidazole": "Cc1ncc[nH]1",
    "4-methoxybenzonitrile": "COc1ccc(C#N)cc1",
    "Boc-pyrrolidine": "CC(C)(C)OC(=O)N1CCCC1",
    "4-fluoronitrobenzene": "O=[N+]([O-])c1ccc(F)cc1",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exclude", default=str(SHARED_DATA / "industry-benchmark-dev.sdf.gz"))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
    from harness import industry_keys

    training = industry_keys(Path(args.exclude))
    out = {}
    for name, smiles in MOLECULES.items():
        if plain_smiles(smiles) in training:
            sys.exit(f"{name} ({smiles}) is in the training set; pick another molecule")
        mol = with_conformer(gnnff.load_molecule(smiles, name=name))
        start = time.perf_counter()
        charges = assign_charges(mol, "am1bcc")
        print(f"{name}: {time.perf_counter() - start:.1f} s")
        out[name] = {"smiles": smiles, "mapped_smiles": mapped_smiles(mol), "am1bcc": [round(q, 6) for q in charges]}
    (HERE / "am1bcc-reference.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
