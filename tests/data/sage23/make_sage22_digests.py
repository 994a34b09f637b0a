"""Write sage22_digests.json: the SHA-256 of the System XML that model ``sage`` (OpenFF Sage 2.2)
gives for a few molecules, with RDKit MMFF94 charges (deterministic and instant; the AM1-BCC
route is the unchanged charge registry's). tests/test_sage23.py checks that ``sage`` still gives
exactly these. Made with the code from before model ``sage-2.3`` existed:

    PYTHONPATH=/path/to/that/checkout python tests/data/sage23/make_sage22_digests.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gnnff
from gnnff.mm.export import system_xml

HERE = Path(__file__).resolve().parent
CHARGES = "mmff94"
#: organic molecules, ions and a zwitterion, and the library-charge routes (water, a salt)
SMILES = ["CCO", "CC(=O)[O-]", "[NH3+]CC(=O)[O-]", "CC(=O)Oc1ccccc1C(=O)O", "COP(=O)([O-])[O-]",
          "CS(C)(=O)=O", "Brc1ccc(I)cc1", "Cc1cc(C)n[nH]1", "CSC(=O)CNC(C)=O", "O", "[Na+].CC(=O)[O-]"]


def main() -> None:
    digests = {}
    for smiles in SMILES:
        result = gnnff.assign_parameters(smiles, model="sage", charges=CHARGES)
        digests[smiles] = hashlib.sha256(system_xml(result.topology, result.parameters).encode()).hexdigest()
    payload = {"made_with": f"gnnff {gnnff.__version__}", "charges": CHARGES,
               "digests": digests}
    (HERE / "sage22_digests.json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
