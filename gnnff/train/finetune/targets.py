"""What the fit sees: the fitted points and samples of each molecule as training data, the
relaxed-profile targets, and the rows and corrections of the driven bonds' torsions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem

from gnnff.nn.corrections import TorsionCorrections
from gnnff.train.finetune.labels import ConformerLabels, ScanLabels
from gnnff.train.finetune.settings import FinetuneSettings

__all__ = ["Profile", "driven_corrections", "driven_rows", "fitted_scans"]


def fitted_scans(scans: Sequence[ScanLabels], settings: FinetuneSettings) -> list[ScanLabels]:
    """The scans of one molecule that are fitted: all, or with ``hold_out_scans`` all but
    the last when there are two or more."""
    return list(scans[:-1] if settings.hold_out_scans and len(scans) >= 2 else scans)


def _training_data(mol: Chem.Mol, scans: Sequence[ScanLabels], every: int,
                   conformers: ConformerLabels | None = None):
    """One :class:`~gnnff.train.data.MoleculeData` of the fitted points and samples of
    every scan, and the labelled conformers and their samples."""
    from gnnff.chem.molecule import molecule_key
    from gnnff.train.data import MoleculeData

    positions, energies, forces = [], [], []
    for s in scans:
        keep = ~s.held_out(every)
        positions += [s.positions[keep], s.sample_positions]
        energies += [s.energies[keep], s.sample_energies]
        forces += [s.forces[keep], s.sample_forces]
    if conformers is not None:
        positions += [conformers.positions, conformers.sample_positions]
        energies += [conformers.energies, conformers.sample_energies]
        forces += [conformers.forces, conformers.sample_forces]
    return MoleculeData(molecule_key(mol), mol, np.concatenate(positions), np.concatenate(energies),
                        np.concatenate(forces), "finetune")


@dataclass(frozen=True, eq=False)
class Profile:
    """The fitted grid points of one scan, for the relaxed-profile loss: ``data`` holds the
    labeler's geometries (where each relaxation starts) and energies. ``torsion`` None:
    a molecule's labelled conformers (relaxed without a restraint)."""

    data: Any  # MoleculeData
    torsion: tuple[int, int, int, int] | None
    targets: np.ndarray


def _profile_data(mol: Chem.Mol, scans: Sequence[ScanLabels], every: int,
                  conformers: ConformerLabels | None = None) -> list[Profile]:
    from gnnff.chem.molecule import molecule_key
    from gnnff.train.data import MoleculeData

    def profile(positions, energies, torsion, targets):
        data = MoleculeData(molecule_key(mol), mol, positions, energies, np.full_like(positions, np.nan),
                            "finetune-profile")
        return Profile(data, torsion, targets)

    out = []
    for s in scans:
        keep = ~s.held_out(every)
        out.append(profile(s.positions[keep], s.energies[keep], s.torsion, s.targets[keep]))
    if conformers is not None and len(conformers.energies) >= 2:  # relative energies need two
        out.append(profile(conformers.positions, conformers.energies, None, np.zeros(len(conformers.energies))))
    return out


def driven_rows(data: Sequence, scans: Sequence[Sequence[ScanLabels]]) -> dict[str, torch.Tensor]:
    """Per valence term, a mask over the rows of the molecules of ``data`` (in order, as
    one batch): True for the proper torsions about a central bond that one of the
    molecule's fitted ``scans`` drives, False for every other row of every term."""
    masks: dict[str, list[np.ndarray]] = {}
    for d, molecule_scans in zip(data, scans):
        bonds = {frozenset((int(s.torsion[1]), int(s.torsion[2]))) for s in molecule_scans}
        for name, tuples in d.topology.tuples.items():
            if name == "propers":
                mask = np.array([frozenset((int(t[1]), int(t[2]))) in bonds for t in tuples], dtype=bool)
            else:
                mask = np.zeros(len(tuples), dtype=bool)
            masks.setdefault(name, []).append(mask)
    return {name: torch.as_tensor(np.concatenate(m)) for name, m in masks.items()}



def driven_corrections(data: Sequence, scans: Sequence[Sequence[ScanLabels]],
                       base: TorsionCorrections | None = None) -> TorsionCorrections:
    """The corrections table ``tune="torsions"`` fits: ``base``'s (a fine-tuned base model's
    own) and, at zero, one key per environment of the propers about the central bonds the
    fitted ``scans`` drive (linear propers excluded), in order of first appearance."""
    from gnnff.nn.corrections import central_signature, torsion_keys
    from gnnff.nn.network import linear_propers

    base = base if base is not None else TorsionCorrections.empty()
    keys, signatures = list(base.keys), list(base.signatures)
    for d, molecule_scans in zip(data, scans):
        bonds = {frozenset((int(s.torsion[1]), int(s.torsion[2]))) for s in molecule_scans}
        propers, linear = d.topology.propers, linear_propers(d.topology)
        rows = [r for r, t in enumerate(propers) if not linear[r] and frozenset((int(t[1]), int(t[2]))) in bonds]
        for r, key in zip(rows, torsion_keys(d.mol, propers[rows])):
            if key not in keys:
                keys.append(key)
                signatures.append(central_signature(d.mol, propers[r][1], propers[r][2]))
    k = torch.zeros((len(keys), base.k.shape[1]), dtype=torch.float64)
    k[:len(base)] = base.k
    return TorsionCorrections(tuple(keys), tuple(signatures), k)

