"""Library charges for common inorganic ions: salts and buffers get exact, fixed charges.

A component of an input that is one of :data:`ION_SMILES` (ammonium, hydroxide, nitrate,
sulfate, the phosphates, carbonates, perchlorate, ...) takes its charges from
``gnnff/library/ions.json`` instead of the network: full AM1-BCC, averaged over
equivalent atoms, summing exactly to the net charge (made by
``recipes/v1/make_ion_library.py``). A monatomic ion (Na+, Cl-, ...) gets its formal
charge.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from rdkit import Chem

__all__ = ["ION_SMILES", "library_charges", "library_key"]

#: Name -> SMILES of the polyatomic ions in the library.
ION_SMILES = {
    "ammonium": "[NH4+]",
    "hydroxide": "[OH-]",
    "hydronium": "[OH3+]",
    "nitrate": "[O-][N+](=O)[O-]",
    "nitrite": "[O-]N=O",
    "sulfate": "[O-]S(=O)(=O)[O-]",
    "hydrogen sulfate": "OS(=O)(=O)[O-]",
    "phosphate": "[O-]P(=O)([O-])[O-]",
    "hydrogen phosphate": "OP(=O)([O-])[O-]",
    "dihydrogen phosphate": "OP(=O)(O)[O-]",
    "carbonate": "[O-]C(=O)[O-]",
    "bicarbonate": "OC(=O)[O-]",
    "perchlorate": "[O-]Cl(=O)(=O)=O",
    "cyanide": "[C-]#N",
    "thiocyanate": "[S-]C#N",
    "azide": "[N-]=[N+]=[N-]",
}

_TABLE = Path(__file__).resolve().parent / "library" / "ions.json"
_MAX_ATOMS = 7  # dihydrogen phosphate


def library_key(mol: Chem.Mol) -> tuple[str, list[int]]:
    """Canonical SMILES with hydrogens (the table key) and the atom indices of ``mol`` in
    canonical output order (the order of the table's charges)."""
    copy = Chem.Mol(mol)
    key = Chem.MolToSmiles(copy, allHsExplicit=True)
    order = [int(i) for i in copy.GetProp("_smilesAtomOutputOrder").strip("[],").split(",") if i]
    return key, order


@functools.cache
def _table() -> dict[str, dict]:
    if not _TABLE.is_file():
        return {}
    return json.loads(_TABLE.read_text(encoding="utf-8"))


def library_charges(mol: Chem.Mol) -> np.ndarray | None:
    """Library charges ``(n_atoms,)`` of ``mol`` (one component with explicit hydrogens):
    the formal charge of a lone atom, the table's for a library ion (summing to its net
    charge to rounding), else None."""
    if mol.GetNumAtoms() == 1:
        return np.array([float(mol.GetAtomWithIdx(0).GetFormalCharge())])
    if mol.GetNumAtoms() > _MAX_ATOMS:
        return None
    key, order = library_key(mol)
    entry = _table().get(key)
    if entry is None or len(order) != mol.GetNumAtoms():
        return None
    charges = np.empty(mol.GetNumAtoms())
    charges[order] = entry["charges"]
    # the table holds 6 decimals (dihydrogen phosphate then sums to -0.999999): the remainder
    # is spread evenly, so equivalent atoms stay equal and the net charge is exact
    return charges + (Chem.GetFormalCharge(mol) - charges.sum()) / len(charges)
