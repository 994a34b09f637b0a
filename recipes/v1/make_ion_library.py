"""Library charges of common inorganic ions (gnnff/chem/library/ions.json), made once.

Full AM1-BCC (OpenFF toolkit + sqm with AM1 optimisation) on an ETKDG conformer, then
averaged over symmetry-equivalent atoms (the oxygens of sulfate, the hydrogens of
ammonium) and shifted to the exact net charge. Monatomic ions need no entry: charge
equilibration gives a lone atom its formal charge exactly.

    python recipes/v1/make_ion_library.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rdkit import Chem

import gnnff
from gnnff.chem.ions import ION_SMILES, library_key
from gnnff.chem.molecule import prepare, with_conformer
from gnnff.condensed.charges import equivalent_atoms
from gnnff.files import atomic_write_text
from gnnff.sources.charges import assign_charges

OUT = Path(__file__).resolve().parents[2] / "gnnff" / "chem" / "library" / "ions.json"


def main() -> None:
    table = {}
    for name, smiles in ION_SMILES.items():
        mol = with_conformer(prepare(gnnff.load_molecule(smiles, name=name), label=name))
        charges = assign_charges(mol, "am1bcc")
        classes = equivalent_atoms(mol)
        for label in np.unique(classes):
            charges[classes == label] = charges[classes == label].mean()
        charges -= (charges.sum() - Chem.GetFormalCharge(mol)) / len(charges)
        key, order = library_key(mol)
        table[key] = {"name": name, "charges": [round(float(charges[i]), 6) for i in order]}
        print(f"{name:>18} {key:>24} " + " ".join(f"{q:+.4f}" for q in table[key]["charges"]))
    atomic_write_text(OUT, json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
