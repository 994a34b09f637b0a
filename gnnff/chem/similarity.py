"""How close a molecule is to a set of others: Morgan fingerprints and Tanimoto similarity
(the domain check of fine-tuned models)."""

from __future__ import annotations

from typing import Sequence

from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

__all__ = ["fingerprint", "nearest_similarity"]

_GENERATOR = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def fingerprint(mol: Chem.Mol):
    """Morgan fingerprint (radius 2, 2048 bits) of ``mol`` without its hydrogens."""
    return _GENERATOR.GetFingerprint(Chem.RemoveHs(mol))


def nearest_similarity(mol: Chem.Mol, others: Sequence) -> float:
    """Largest Tanimoto similarity of ``mol`` to ``others`` (fingerprints); 0 for none."""
    return max(DataStructs.BulkTanimotoSimilarity(fingerprint(mol), list(others))) if len(others) else 0.0
