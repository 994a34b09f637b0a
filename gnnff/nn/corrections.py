"""Torsion corrections: residuals a fine-tuned model adds to the proper torsions of the
chemical environments it was tuned on, and to nothing else.

A correction is keyed by the torsion's environment: the canonical SMILES of the atoms
within ``RADIUS`` bonds of its central bond, the four torsion atoms numbered 1-4 (the
lesser of the two directions). Equivalent torsions (the two ortho carbons of a phenyl,
the same bond in another member of the series) share a key, so they share a residual.
A residual is a signed barrier per periodicity of :data:`~gnnff.schema.PROPER_PERIODICITIES`
added to the base model's signed barrier (``k`` with phase 0, ``-k`` with phase pi); the
sum is written back as ``|k|`` with phase 0 or pi, so the export stays standard. Every
other parameter of every molecule is the base model's, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem

from gnnff.chem.topology import Topology
from gnnff.errors import ModelError
from gnnff.schema import PROPER_PERIODICITIES, ForceFieldParameters

__all__ = ["RADIUS", "TorsionCorrections", "torsion_keys", "central_signature"]

#: bonds from either central atom that a torsion's environment key reaches
RADIUS = 2


def central_signature(mol: Chem.Mol, j: int, k: int) -> str:
    """A cheap prefilter of a central bond: elements, degrees and aromaticity of its atoms."""
    def atom(i: int) -> str:
        a = mol.GetAtomWithIdx(int(i))
        return f"{a.GetAtomicNum()}.{a.GetDegree()}.{int(a.GetIsAromatic())}"
    return "|".join(sorted((atom(j), atom(k))))


def torsion_keys(mol: Chem.Mol, quartets: Sequence[Sequence[int]], radius: int = RADIUS) -> list[str]:
    """The environment key of each proper ``(i, j, k, l)`` of ``mol`` (module docstring)."""
    if len(quartets) == 0:
        return []
    work = Chem.Mol(mol)
    for atom in work.GetAtoms():
        atom.SetAtomMapNum(0)
    distances = Chem.GetDistanceMatrix(work)
    keys = []
    for quartet in quartets:
        order = tuple(int(a) for a in quartet)
        j, k = order[1], order[2]
        atoms = [int(a) for a in np.flatnonzero(np.minimum(distances[j], distances[k]) <= radius)]
        inside = set(atoms)
        bonds = [b.GetIdx() for b in work.GetBonds() if b.GetBeginAtomIdx() in inside and b.GetEndAtomIdx() in inside]
        written = []
        for direction in (order, order[::-1]):
            for n, a in enumerate(direction, start=1):
                work.GetAtomWithIdx(a).SetAtomMapNum(n)
            written.append(Chem.MolFragmentToSmiles(work, atomsToUse=atoms, bondsToUse=bonds or None,
                                                    isomericSmiles=False, canonical=True))
            for a in direction:
                work.GetAtomWithIdx(a).SetAtomMapNum(0)
        keys.append(min(written))
    return keys


@dataclass(frozen=True, eq=False)
class TorsionCorrections:
    """Per-environment residuals on proper torsions: ``keys`` and ``k`` (``(len(keys),
    len(PROPER_PERIODICITIES))``, signed kJ/mol). ``signatures``: the central-bond
    prefilter of each key (:func:`central_signature`)."""

    keys: tuple[str, ...]
    signatures: tuple[str, ...]
    k: torch.Tensor

    def __post_init__(self) -> None:
        if self.k.shape != (len(self.keys), len(PROPER_PERIODICITIES)) or len(self.signatures) != len(self.keys):
            raise ModelError(f"torsion corrections: {len(self.keys)} keys, {len(self.signatures)} signatures and "
                             f"a k of shape {tuple(self.k.shape)}; the checkpoint is damaged")

    @classmethod
    def empty(cls) -> "TorsionCorrections":
        return cls((), (), torch.zeros((0, len(PROPER_PERIODICITIES)), dtype=torch.float64))

    def __len__(self) -> int:
        return len(self.keys)

    def to_payload(self) -> dict[str, Any]:
        return {"radius": RADIUS, "periodicities": list(PROPER_PERIODICITIES), "keys": list(self.keys),
                "signatures": list(self.signatures), "k": self.k.detach().double().cpu().clone()}

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None, label: str = "checkpoint") -> "TorsionCorrections | None":
        if payload is None:
            return None
        try:
            if int(payload["radius"]) != RADIUS or list(payload["periodicities"]) != list(PROPER_PERIODICITIES):
                raise ModelError(f"{label}: torsion corrections written for radius {payload['radius']} and "
                                 f"periodicities {payload['periodicities']}; this gnnff uses {RADIUS} and "
                                 f"{list(PROPER_PERIODICITIES)}: fine-tune again")
            return cls(tuple(payload["keys"]), tuple(payload["signatures"]), torch.as_tensor(payload["k"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{label}: torsion corrections unreadable ({err}); the checkpoint is damaged") from None

    def rows(self, mol: Chem.Mol, topology: Topology) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, index)``: the proper rows of ``topology`` whose environment has a
        correction, and the correction each takes. Linear propers (an undefined dihedral)
        take none."""
        from gnnff.nn.network import linear_propers

        propers = topology.propers
        if not len(self) or len(propers) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        signatures = set(self.signatures)
        linear = linear_propers(topology)
        candidates = [r for r, t in enumerate(propers)
                      if not linear[r] and central_signature(mol, t[1], t[2]) in signatures]
        lookup = {key: n for n, key in enumerate(self.keys)}
        keys = torsion_keys(mol, propers[candidates])
        hits = [(r, lookup[key]) for r, key in zip(candidates, keys) if key in lookup]
        if not hits:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        rows, index = zip(*hits)
        return np.asarray(rows, dtype=np.int64), np.asarray(index, dtype=np.int64)

    def apply(self, parameters: ForceFieldParameters, rows: np.ndarray, index: np.ndarray,
              k: torch.Tensor | None = None) -> ForceFieldParameters:
        """``parameters`` with the residuals (``k``: this table's by default; a tensor
        with gradients when fitting) added on ``rows`` (:meth:`rows`)."""
        if len(rows) == 0:
            return parameters
        k = self.k if k is None else k
        propers = parameters.propers
        rows_t, index_t = torch.as_tensor(rows), torch.as_tensor(index)
        old_k, old_phase = propers.k[rows_t], propers.phase[rows_t]
        signed = torch.where(old_phase > 0.5 * math.pi, -old_k, old_k) + k[index_t].to(old_k.dtype)
        # |signed| with the gradient +1 at zero, so a residual on a zero barrier can grow
        sign = torch.where(signed < 0, -1.0, 1.0).to(signed.dtype).detach()
        new_k = propers.k.index_copy(0, rows_t, signed * sign)
        new_phase = propers.phase.index_copy(0, rows_t, math.pi * (signed < 0).to(old_phase.dtype))
        return parameters.replace(propers=type(propers)(k=new_k, phase=new_phase))
