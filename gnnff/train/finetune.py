"""Bespoke fine-tuning: a base model's valence terms tuned on torsion drives of a series.

``gnnff finetune ligands.sdf -o series.pt`` does, for every ligand:

1. **Labels** (resumable, one file per scan under ``WORK/labels/``): a constrained torsion
   drive (:mod:`gnnff.train.scan`) of each rotatable bond that matters
   (:func:`~gnnff.train.scan.rotatable_torsions`: central and ring-substituent torsions,
   one per symmetry-unique bond) with the labeler, the labeler's energies and forces at
   each optimised point, and ``samples`` off-equilibrium geometries per fitted point
   (Gaussian displacements of every atom) with their energies and forces.
2. **Split**: every ``hold_out``-th grid point of each scan (starting at the second) is
   held out; the others and their samples are fitted. With ``hold_out_scans``, a
   molecule's last scan (when it has two or more) is held out whole.
3. **Fit**: only the heads of the valence terms (bonds, angles, proper and improper
   torsions, Urey-Bradley when the model has it) are trained; the message-passing trunk
   and the nonbonded head stay frozen, so charges and Lennard-Jones are the base model's
   for every molecule (condensed-phase behaviour does not move). Loss, full batch, Adam:
   ``w_P MSE(E_MM(relaxed) - E_ref)_scan + w_E MSE(E - <E>_mol) + w_F MSE(F)
   + sum_p w_p ((p - p_base) / scale_p)^2 / n_mol`` (kcal/mol, kcal/mol/A). The first term is
   the profile the report measures: each fitted grid point minimised with the current
   parameters (dihedral restrained), its MM energy against the labeler's, both relative
   to the scan's mean; geometries refreshed every ``relax_every`` steps (ForceBalance's
   treatment of optimised-geometry targets). The next two are the labeler's energies and
   forces at its own geometries and samples. The last pulls toward the base model's own
   parameters of the series (bond/angle force constants as log ratios, lengths in
   0.002 nm, angles in 2 degrees, torsion barriers in kcal/mol), per molecule, with
   weight ``pull`` on the proper torsions about the driven bonds (what the scans inform)
   and ``anchor`` on every other valence parameter (what they do not: ring torsions,
   bonds and angles stay where the base model, trained on DFT, put them).
4. **Checkpoint**: the base checkpoint's network and domain with the tuned heads, plus a
   ``finetune`` record (base model, labeler, molecules, scans, settings, metrics). Loading
   it (:class:`gnnff.nn.checkpoint.GNNSource`) warns for a molecule whose Morgan
   fingerprint is less similar than ``similarity`` (Tanimoto) to every series molecule.
5. **Report** (``WORK/report/``): one PNG per scan (labeler, base, tuned; held-out points
   marked), ``scans.csv`` (RMSE of the base and tuned profiles on fitted and held-out
   points), ``summary.json`` (the same, the timing split, the failures).

Profiles compare as in ``gnnff scan``: each force field's System minimised with the
dihedral constrained at the labeler's geometries, each profile relative to its minimum.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem

from gnnff.errors import GnnffError, InputError, ParametrizationError
from gnnff.files import atomic_write, atomic_write_csv, atomic_write_text
from gnnff.nn.corrections import TorsionCorrections
from gnnff.schema import NONBONDED, ForceFieldParameters
from gnnff.units import KCAL_TO_KJ, KJ_TO_KCAL, NM_TO_ANGSTROM

__all__ = ["FinetuneSettings", "TUNES", "DEFAULT_ENERGIES", "ScanLabels", "ConformerLabels", "Profile", "driven_rows",
           "driven_corrections", "finetune", "fitted_scans", "label_molecule", "label_conformers",
           "embedded_conformers", "fit", "valence_heads", "PULL_SCALES"]

FORCE_TO_KCAL_A = KJ_TO_KCAL / NM_TO_ANGSTROM

#: (term, field) -> scale of the pull toward the base model: a number (the field's unit)
#: or "log" (relative change of a positive constant). Fields not named (phases) are fixed.
PULL_SCALES: dict[tuple[str, str], float | str] = {
    ("bonds", "k"): "log", ("bonds", "length"): 0.002,
    ("angles", "k"): "log", ("angles", "angle"): math.radians(2.0),
    ("propers", "k"): KCAL_TO_KJ, ("impropers", "k"): KCAL_TO_KJ,
    ("urey_bradleys", "k"): "log", ("urey_bradleys", "length"): 0.002,
}


#: what fine-tuning may change (:attr:`FinetuneSettings.tune`)
TUNES = ("torsions", "heads")
#: the default weight of the energies at the labeler's geometries, per ``tune``: torsion
#: residuals cannot fix the bond and angle errors that dominate the energies of the
#: off-equilibrium samples, and at weight 1 they bent the profiles to absorb them (on the
#: development ligands: held-out profile RMSE -30 %, 3 of 8 scans better; at 0.1: -60 %, 8 of 8)
DEFAULT_ENERGIES = {"heads": 1.0, "torsions": 0.1}
#: kJ/mol per unit of the trained value of a torsion residual (``tune="torsions"``)
RESIDUAL_SCALE = 100.0
#: the periodicities a residual may have: the fitted points of a 15-degree scan are 30
#: degrees apart (every other one is held out), where cos(6 phi) and cos(5 phi) alias
#: with lower ones and could fit the points while missing the held-out ones between
RESIDUAL_PERIODICITIES = (1, 2, 3, 4)


def _residual(raw: torch.Tensor) -> torch.Tensor:
    """The residuals (kJ/mol) of the trained values ``raw``: scaled, zero beyond RESIDUAL_PERIODICITIES."""
    from gnnff.schema import PROPER_PERIODICITIES

    kept = torch.tensor([n in RESIDUAL_PERIODICITIES for n in PROPER_PERIODICITIES], dtype=raw.dtype)
    return RESIDUAL_SCALE * raw * kept


@dataclass(frozen=True)
class FinetuneSettings:
    """Every choice of a fine-tuning run (recorded in the checkpoint).

    ``scans``: at most this many torsions per molecule (None: every one found);
    ``step``: grid spacing of the drives, degrees; ``samples``: off-equilibrium
    geometries per fitted grid point, displaced by ``displacement`` nm (standard deviation
    per coordinate); ``hold_out``: every ``hold_out``-th grid point is held out (0: none);
    ``hold_out_scans``: each molecule with two or more scans also keeps its last scan
    out of the fit entirely (reported apart: the test of torsions never fitted);
    ``steps``/``learning_rate``/``schedule``: Adam on the valence heads, its step size
    decayed to zero along a cosine (``"cosine"``) or held (``"constant"``); ``profile``, ``energies``,
    ``forces``: loss weights (relaxed profiles, energies and forces at the labeler's
    geometries); ``pull``, ``anchor``: weights of the pull to the base model on the
    driven bonds' torsions and on everything else; ``relax_every``: steps between
    re-minimisations of the profile points; ``similarity``: Tanimoto below which a molecule is far from the series;
    ``terms``: the valence heads trained (default: all of them); ``conformers``: at most
    this many conformers per molecule embedded from its graph (RDKit ETKDG, seeded) and
    minimised with the labeler, fitted as energies and forces at the labeler's minima (0:
    none) and, with ``relax_conformers``, as relaxed relative energies (weight ``profile``).
    ``tune``: what the fit changes. ``"torsions"`` (default): nothing of the network, only
    per-environment residuals on the proper torsions about the driven bonds
    (:mod:`gnnff.nn.corrections`; ``pull`` weighs them, ``anchor`` does not apply and
    ``terms`` is refused): every other parameter of every molecule stays the base model's
    bit for bit. ``"heads"``: the valence heads' weights (every molecule's valence terms
    move, held near the base by ``pull``/``anchor``). ``energies`` None: the weight
    :data:`DEFAULT_ENERGIES` gives ``tune``.
    """

    labeler: str = "ani-2x"
    base: str | None = None
    scans: int | None = None
    step: float = 15.0
    samples: int = 2
    displacement: float = 0.003
    hold_out: int = 2
    hold_out_scans: bool = False
    steps: int = 300
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    profile: float = 1.0
    relax_every: int = 25
    energies: float | None = None
    forces: float = 0.02
    pull: float = 0.01
    anchor: float = 1.0
    similarity: float = 0.35
    terms: tuple[str, ...] | None = None
    conformers: int = 0
    relax_conformers: bool = True
    tune: str = "torsions"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tune not in TUNES:
            raise InputError(f"finetune: tune must be one of {', '.join(TUNES)}, got {self.tune!r}")
        if self.tune == "torsions" and self.terms is not None:
            raise InputError(f"finetune: --terms {','.join(self.terms)} chooses the heads that --tune heads trains; "
                             "--tune torsions fits torsion residuals only: drop --terms or add --tune heads")
        if self.energies is None:  # frozen: the resolved weight is what the checkpoint records
            object.__setattr__(self, "energies", DEFAULT_ENERGIES[self.tune])
        for name in ("samples", "hold_out", "steps", "profile", "energies", "forces", "pull", "anchor",
                     "conformers"):
            if getattr(self, name) < 0:
                raise InputError(f"finetune: {name} must be >= 0, got {getattr(self, name)}")
        if self.scans is not None and self.scans < 1:
            raise InputError(f"finetune: --scans must be 'auto' or a number >= 1, got {self.scans}")
        if self.terms is not None and NONBONDED.name in self.terms:
            raise InputError("finetune: --terms cannot include nonbonded; charges and Lennard-Jones stay frozen")
        if self.relax_every < 1:
            raise InputError(f"finetune: relax_every must be >= 1, got {self.relax_every}")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"finetune: schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.hold_out == 1:
            raise InputError("finetune: --hold-out 1 would hold every point out; use 0 (none) or >= 2")


class _Saved:
    """Labels saved as one ``.npz`` of their fields (written atomically) and read back."""

    def save(self, path: Path) -> None:
        arrays = {k: np.asarray(v) for k, v in asdict(self).items()}

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path):
        with np.load(path) as data:
            values = {k: data[k] for k in data.files}
        if "torsion" in values:
            values["torsion"] = tuple(int(a) for a in values["torsion"])
        values["seconds"] = float(values["seconds"])
        return cls(**values)


@dataclass(frozen=True, eq=False)
class ScanLabels(_Saved):
    """One labelled drive: grid values and reached dihedrals (degrees), the labeler's
    energies (kJ/mol), positions (nm) and forces (kJ/mol/nm) at each optimised point, and
    the off-equilibrium samples (``sample_point``: the grid point each came from)."""

    torsion: tuple[int, int, int, int]
    targets: np.ndarray
    dihedrals: np.ndarray
    energies: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    sample_point: np.ndarray
    sample_positions: np.ndarray
    sample_energies: np.ndarray
    sample_forces: np.ndarray
    seconds: float

    def held_out(self, every: int) -> np.ndarray:
        """Mask of the grid points held out: every ``every``-th, starting at the second."""
        return _mask(len(self.targets), every)


@dataclass(frozen=True, eq=False)
class ConformerLabels(_Saved):
    """Conformers of one molecule embedded from its graph and minimised with the labeler
    (no constraint): positions (nm), energies (kJ/mol) and forces (kJ/mol/nm) at each
    minimum, and the off-equilibrium samples around them (``sample_point``: the
    conformer each came from)."""

    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    sample_point: np.ndarray
    sample_positions: np.ndarray
    sample_energies: np.ndarray
    sample_forces: np.ndarray
    seconds: float


def _slug(mol: Chem.Mol) -> str:
    """A file-name-safe key of a molecule in its atom order (labels are per atom order)."""
    from gnnff.chem.molecule import mapped_smiles

    return hashlib.sha1(mapped_smiles(mol).encode()).hexdigest()[:16]


def label_path(folder: Path, torsion: Sequence[int], settings: FinetuneSettings) -> Path:
    """Where the labels of one drive live: named by the torsion and every setting they depend on."""
    return folder / (f"scan-{'-'.join(map(str, torsion))}-step{settings.step:g}-samples{settings.samples}"
                     f"-holdout{settings.hold_out}.npz")


def conformer_path(folder: Path, settings: FinetuneSettings) -> Path:
    """Where the labelled conformers of one molecule live (named by the settings they depend on)."""
    return folder / f"conformers-n{settings.conformers}-seed{settings.seed}-samples{settings.samples}.npz"


def labelled(mol: Chem.Mol, root: Path, settings: FinetuneSettings) -> bool:
    """Whether every drive (and the conformers) of ``mol`` is labelled under ``root`` (``WORK/labels/LABELER``)."""
    from gnnff.train.scan import rotatable_torsions

    folder = root / _slug(mol)
    torsions = rotatable_torsions(mol)[:settings.scans]
    return (bool(torsions) and all(label_path(folder, t, settings).is_file() for t in torsions)
            and (not settings.conformers or conformer_path(folder, settings).is_file()))


def label_molecule(mol: Chem.Mol, labeler, folder: Path, settings: FinetuneSettings) -> list[ScanLabels]:
    """The labelled drives of ``mol``'s rotatable torsions (at most ``settings.scans``),
    read from ``folder`` where already there, else computed and written there."""
    from gnnff.chem.molecule import name_of, positions_nm
    from gnnff.threads import serial_numerics
    from gnnff.train.scan import Atoms, drive, labeler_energy, moving_atoms, rotatable_torsions

    label = name_of(mol)
    torsions = rotatable_torsions(mol)[:settings.scans]
    if not torsions:
        raise InputError(f"{label}: no rotatable bond between heavy-atom groups to scan; leave it out of the series")
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    energy = labeler_energy(labeler, z, Chem.GetFormalCharge(mol))
    x0 = positions_nm(mol)[0]
    try:
        energy(x0)
    except ParametrizationError as err:  # outside the labeler's domain: name the molecule and what to do
        raise ParametrizationError(f"{label}: {err}; leave it out or choose another --labeler") from None
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for torsion in torsions:
        path = label_path(folder, torsion, settings)
        if path.is_file():
            out.append(ScanLabels.load(path))
            continue
        start = time.perf_counter()
        with serial_numerics():  # many small matrices: a second BLAS thread only waits
            points = drive(energy, Atoms.of(mol), x0, torsion, moving_atoms(mol, torsion), step=settings.step)
            positions = np.stack([p.positions for p in points])
            labelled = labeler(z, positions, Chem.GetFormalCharge(mol))
            fitted = np.flatnonzero(~_mask(len(points), settings.hold_out))
            samples = _samples(labeler, z, Chem.GetFormalCharge(mol), positions, fitted, settings,
                               np.random.default_rng([settings.seed, *torsion]))
        labels = ScanLabels(torsion, np.array([p.target_deg for p in points]),
                            np.array([p.dihedral_deg for p in points]), np.asarray(labelled[0]), positions,
                            np.asarray(labelled[1]), *samples, time.perf_counter() - start)
        labels.save(path)
        out.append(labels)
    return out


def _samples(labeler, z: np.ndarray, charge: int, positions: np.ndarray, points: np.ndarray,
             settings: FinetuneSettings, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Off-equilibrium samples: ``settings.samples`` Gaussian displacements (standard
    deviation ``settings.displacement`` nm per coordinate) of each geometry
    ``positions[points]``, and the labeler's energies and forces there. Returns the
    sample fields of the labels: source point, positions, energies, forces."""
    source = np.repeat(points, settings.samples)
    displaced = positions[source] + rng.normal(scale=settings.displacement, size=(len(source), *positions.shape[1:]))
    energies, forces = labeler(z, displaced, charge) if len(source) else (np.zeros(0), np.zeros_like(displaced))
    return source, displaced, np.asarray(energies), np.asarray(forces)


#: Heavy-atom RMSD (A) below which two embedded conformers count as one (RDKit's prune threshold)
PRUNE_RMS = 0.5


def embedded_conformers(mol: Chem.Mol, n: int, seed: int) -> list[np.ndarray]:
    """Up to ``n`` conformers (positions nm) embedded from ``mol``'s graph alone (RDKit
    ETKDGv3, ``seed``, pruned at :data:`PRUNE_RMS`), never from its input geometry."""
    from rdkit.Chem import AllChem

    m = Chem.Mol(mol)
    m.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = 0xF00D + seed  # RDKit's seed 0 embeds every conformer alike
    params.pruneRmsThresh = PRUNE_RMS
    ids = AllChem.EmbedMultipleConfs(m, n, params)
    return [np.asarray(m.GetConformer(i).GetPositions()) / NM_TO_ANGSTROM for i in ids]


def label_conformers(mol: Chem.Mol, labeler, folder: Path, settings: FinetuneSettings) -> ConformerLabels | None:
    """``settings.conformers`` conformers of ``mol`` (:func:`embedded_conformers`) each
    minimised with the labeler, and ``samples`` off-equilibrium geometries around each,
    read from ``folder`` where already there, else computed and written there. None when
    ``settings.conformers`` is 0; a conformer whose minimisation fails is left out."""
    from gnnff.threads import serial_numerics
    from gnnff.train.scan import Atoms, constrained_minimise, labeler_energy

    if not settings.conformers:
        return None
    path = conformer_path(folder, settings)
    if path.is_file():
        return ConformerLabels.load(path)
    folder.mkdir(parents=True, exist_ok=True)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    charge = Chem.GetFormalCharge(mol)
    energy = labeler_energy(labeler, z, charge)
    start = time.perf_counter()
    minima = []
    with serial_numerics():
        for x in embedded_conformers(mol, settings.conformers, settings.seed):
            try:
                minima.append(constrained_minimise(energy, Atoms.of(mol), x, None, None)[0])
            except ParametrizationError:
                continue
        positions = np.stack(minima) if minima else np.zeros((0, mol.GetNumAtoms(), 3))
        labelled = labeler(z, positions, charge) if minima else (np.zeros(0), np.zeros_like(positions))
        samples = _samples(labeler, z, charge, positions, np.arange(len(minima)), settings,
                           np.random.default_rng([settings.seed, len(z), 1]))
    labels = ConformerLabels(positions, np.asarray(labelled[0]), np.asarray(labelled[1]), *samples,
                             time.perf_counter() - start)
    labels.save(path)
    return labels


def fitted_scans(scans: Sequence[ScanLabels], settings: FinetuneSettings) -> list[ScanLabels]:
    """The scans of one molecule that are fitted: all, or with ``hold_out_scans`` all but
    the last when there are two or more."""
    return list(scans[:-1] if settings.hold_out_scans and len(scans) >= 2 else scans)


def _mask(n: int, every: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if every:
        mask[1::every] = True
    return mask


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


def _pull(tuned: ForceFieldParameters, base: ForceFieldParameters, driven: dict[str, torch.Tensor] | None,
          pull: float, anchor: float, n_molecules: int) -> torch.Tensor:
    """The restraint toward the base model: per molecule, the sum of squared scaled changes
    of the pulled fields (:data:`PULL_SCALES`), weighted ``pull`` on the rows ``driven``
    marks (the driven bonds' torsions) and ``anchor`` on all others (every row ``pull``
    when ``driven`` is None)."""
    total = torch.zeros((), dtype=torch.float64)
    for term in tuned.terms:
        if term is NONBONDED:
            continue
        for f in term.fields():
            scale = PULL_SCALES.get((term.name, f.name))
            if scale is None:
                continue
            new, old = getattr(tuned.term(term), f.name), getattr(base.term(term), f.name)
            if new.numel() == 0:
                continue
            d = (torch.log(new / old) if scale == "log" else (new - old) / scale).double() ** 2
            d = d.reshape(d.shape[0], -1).sum(1)
            if driven is None:
                weight = torch.full_like(d, pull)
            else:
                weight = torch.where(driven[term.name], pull, anchor).to(d.dtype)
            total = total + (weight * d).sum()
    return total / max(n_molecules, 1)


def valence_heads(network: torch.nn.Module, terms: Sequence[str] | None = None) -> list[str]:
    """Names of the heads fine-tuning trains: ``terms`` (default: every term's but the
    nonbonded one); InputError for a term the network has no head for."""
    heads = [name for name in network.heads if name != NONBONDED.name]
    if terms is None:
        return heads
    unknown = sorted(set(terms) - set(heads))
    if unknown:
        raise InputError(f"finetune: the base model has no valence head '{unknown[0]}' (heads: {', '.join(heads)})")
    return [name for name in heads if name in terms]


def fit(network: torch.nn.Module, data: Sequence, settings: FinetuneSettings, features: str = "v0",
        progress: bool = True, profiles: Sequence[Profile] = (),
        driven: dict[str, torch.Tensor] | None = None, corrections: TorsionCorrections | None = None
        ) -> tuple[list[dict[str, float]], TorsionCorrections | None]:
    """Fit on ``data`` (MoleculeData: energies and forces at the labeler's geometries) and
    ``profiles`` (relaxed torsion profiles), with the pull toward the base model
    (``driven``: :func:`driven_rows` of ``data``). ``settings.tune == "heads"``: trains
    ``network``'s valence heads in place (``corrections``, the base model's own, are
    applied and kept as they are); ``"torsions"``: trains the residuals of
    ``corrections`` (:func:`driven_corrections`) and leaves ``network`` as it is.
    Returns the loss history (every step: total, energy RMSE kcal/mol, force RMSE
    kcal/mol/A, profile RMSE kcal/mol, pull) and the corrections fitted. Runs on the threads
    :func:`gnnff.threads.inference_threads` chooses for the replicas' atoms (one on busy
    cores: torch's default there made each step 12x slower)."""
    from gnnff.threads import inference_threads

    atoms = sum(d.topology.n_atoms * d.n_conformations for d in [*data, *(q.data for q in profiles)])
    with inference_threads(atoms):
        return _fit(network, data, settings, features, progress, profiles, driven, corrections)


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


class _Predictor:
    """Parameters of one batch's molecules as the fit sees them: the network's (its
    valence heads training, ``raw`` None) or the base network's with the torsion
    residuals ``corrections.k + _residual(raw)`` on the rows whose environment has one."""

    def __init__(self, network: torch.nn.Module, batch, molecules: Sequence, corrections: TorsionCorrections | None,
                 raw: torch.Tensor | None) -> None:
        self.network, self.graph, self.raw = network, batch.graph, raw
        self.corrections = corrections if corrections is not None else TorsionCorrections.empty()
        rows, index, offset = [], [], 0
        for d in molecules:  # make_batch's row order: each molecule's propers in turn
            r, i = self.corrections.rows(d.mol, d.topology)
            rows.append(r + offset)
            index.append(i)
            offset += len(d.topology.propers)
        self.rows, self.index = np.concatenate(rows or [np.zeros(0, np.int64)]), np.concatenate(
            index or [np.zeros(0, np.int64)])
        with torch.no_grad():
            self.embeddings = network.gnn(batch.graph)
            self.base = network(batch.graph, self.embeddings) if raw is not None else None

    def __call__(self) -> ForceFieldParameters:
        if self.raw is None:
            return self.corrections.apply(self.network(self.graph, self.embeddings), self.rows, self.index)
        k = self.corrections.k + _residual(self.raw)
        return self.corrections.apply(self.base, self.rows, self.index, k=k)


class _Relaxed:
    """The relaxed-profile loss: every ``relax_every`` steps each profile's fitted points
    are minimised with the current parameters' System (OpenMM, the dihedral restrained
    at its grid value, from the labeler's geometry: :func:`~gnnff.train.scan.mm_profile`,
    as the report does); in between, the loss is the mean squared difference of the MM
    energies at those geometries from the labeler's, each scan relative to its mean. The
    geometries are held fixed within a round: at a restrained minimum the energy's
    derivative by a parameter is its partial derivative at fixed positions (the
    restraint does not depend on the parameters), the ForceBalance treatment of
    optimised-geometry targets. A profile without a torsion (conformers) is minimised
    without a restraint: at an unconstrained minimum the same holds."""

    def __init__(self, network: torch.nn.Module, profiles: Sequence[Profile], features: str,
                 corrections: TorsionCorrections | None = None, raw: torch.Tensor | None = None) -> None:
        from gnnff.train.training import centred, make_batch

        self.profiles = list(profiles)
        self.batch = make_batch([(q.data, None) for q in self.profiles], features=features)
        self.predict = _Predictor(network, self.batch, [q.data for q in self.profiles], corrections, raw)
        self.n = len(self.profiles)
        self.reference = centred(self.batch.energies, self.batch.conformation_molecule, self.n)
        self.positions = self.batch.positions
        self.frozen = torch.zeros_like(self.batch.energies)

    def relax(self) -> None:
        from gnnff.mm.energy import compute_energy
        from gnnff.mm.export import to_openmm
        from gnnff.nn.checkpoint import _split
        from gnnff.train.scan import ScanPoint, mm_profile
        from gnnff.train.training import expand

        topologies = [q.data.topology for q in self.profiles]
        with torch.no_grad():
            parameters = self.predict()
            relaxed = []
            for q, p in zip(self.profiles, _split(parameters, topologies)):
                start = [ScanPoint(float(t), float(t), 0.0, x) for t, x in zip(q.targets, q.data.positions)]
                points = mm_profile(to_openmm(q.data.topology, p), start, q.torsion)
                relaxed.append(np.concatenate([point.positions for point in points]))
            self.positions = torch.as_tensor(np.concatenate(relaxed), dtype=self.batch.positions.dtype)[None]
            energies = compute_energy(self.batch.replicas, expand(parameters, self.batch.rows), self.positions,
                                      pairs=self.batch.pairs, terms=[NONBONDED])
            self.frozen = energies[NONBONDED.name][0].double()

    def mse(self, valence) -> torch.Tensor:
        """Mean squared profile error (kcal/mol)^2 of the current parameters at the last relaxed geometries."""
        from gnnff.mm.energy import compute_energy, total_energy
        from gnnff.train.training import centred, expand

        parameters = self.predict()
        energies = compute_energy(self.batch.replicas, expand(parameters, self.batch.rows), self.positions,
                                  terms=valence)
        e = total_energy(energies)[0].double() + self.frozen
        d = (centred(e, self.batch.conformation_molecule, self.n) - self.reference) * KJ_TO_KCAL
        return (d**2).mean()


def _fit(network: torch.nn.Module, data: Sequence, settings: FinetuneSettings, features: str,
         progress: bool, profiles: Sequence[Profile], driven: dict[str, torch.Tensor] | None,
         corrections: TorsionCorrections | None) -> tuple[list[dict[str, float]], TorsionCorrections | None]:
    from tqdm import tqdm

    from gnnff.mm.energy import energy_and_forces
    from gnnff.train.training import centred, expand, make_batch

    torch.manual_seed(settings.seed)
    batch = make_batch([(d, None) for d in data], features=features)
    network.eval()
    network.requires_grad_(False)
    torsions = settings.tune == "torsions"
    if torsions:
        if corrections is None:
            raise ValueError("fit: tune='torsions' needs the corrections table (driven_corrections)")
        # Adam moves each raw value by about the learning rate per step: in units of
        # RESIDUAL_SCALE, 300 steps at 1e-3 can move a barrier by up to 30 kJ/mol
        raw = torch.zeros_like(corrections.k, requires_grad=True)
        trained = [raw]
    else:
        raw = None
        trained = [p for name in valence_heads(network, settings.terms) for p in network.heads[name].parameters()]
        for p in trained:
            p.requires_grad_(True)
    predict = _Predictor(network, batch, data, corrections, raw)
    with torch.no_grad():
        base = predict()
    # the nonbonded term is frozen: its energies and forces once, the valence terms every step
    nb_energies, nb_forces = energy_and_forces(batch.replicas, expand(base, batch.rows), batch.positions,
                                               term=NONBONDED, pairs=batch.pairs)
    valence = [t for t in base.terms if t is not NONBONDED]
    relaxed = (_Relaxed(network, profiles, features, corrections, raw)
               if profiles and settings.profile > 0 else None)
    optimizer = torch.optim.Adam(trained, lr=settings.learning_rate)
    # cosine decay to zero: late steps settle instead of oscillating between relaxations
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(settings.steps, 1))
                 if settings.schedule == "cosine" else None)
    n_mol = batch.graph.net_charges.shape[0]
    reference = centred(batch.energies, batch.conformation_molecule, n_mol)
    history = []
    for step in tqdm(range(settings.steps), desc="fit", unit="step", disable=not progress, leave=False):
        if relaxed is not None and step % settings.relax_every == 0:
            relaxed.relax()
        parameters = predict()
        energies, forces = energy_and_forces(batch.replicas, expand(parameters, batch.rows), batch.positions,
                                             terms=valence, create_graph=True)
        energies, forces = energies[0] + nb_energies[0].detach(), forces[0] + nb_forces[0].detach()
        de = (centred(energies.double(), batch.conformation_molecule, n_mol) - reference) * KJ_TO_KCAL
        df = (forces - batch.forces).double() * FORCE_TO_KCAL_A
        if torsions:  # the residuals themselves, in kcal/mol
            pull = settings.pull * ((_residual(raw) / KCAL_TO_KJ) ** 2).sum() / max(n_mol, 1)
        else:
            pull = _pull(parameters, base, driven, settings.pull, settings.anchor, n_mol)
        e_mse, f_mse = (de**2).mean(), (df**2).mean()
        p_mse = relaxed.mse(valence) if relaxed is not None else torch.zeros((), dtype=torch.float64)
        loss = settings.energies * e_mse + settings.forces * f_mse + settings.profile * p_mse + pull
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 10.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.append({"loss": loss.item(), "energy_rmse": math.sqrt(e_mse.item()),
                        "force_rmse": math.sqrt(f_mse.item()), "profile_rmse": math.sqrt(p_mse.item()),
                        "pull": pull.item()})
    network.requires_grad_(False)
    if torsions:
        corrections = dataclasses.replace(corrections, k=(corrections.k + _residual(raw)).detach())
    return history, corrections


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else float("nan")


def _profiles(scan: ScanLabels, systems: dict[str, Any]) -> dict[str, np.ndarray]:
    """Relative profiles (kcal/mol): the labeler's, then each System minimised with the
    dihedral restrained at the labeler's geometries."""
    from gnnff.train.scan import ScanPoint, mm_profile

    reference = [ScanPoint(float(t), float(d), float(e), x)
                 for t, d, e, x in zip(scan.targets, scan.dihedrals, scan.energies, scan.positions)]
    out = {"reference": scan.energies * KJ_TO_KCAL}
    for name, system in systems.items():
        points = mm_profile(system, reference, scan.torsion)
        out[name] = np.array([p.energy for p in points]) * KJ_TO_KCAL
    return {k: v - v.min() for k, v in out.items()}


def _conformer_rmse(conformers: ConformerLabels, systems: dict[str, Any]) -> dict[str, float]:
    """RMSE (kcal/mol) of each System's relative energies of the labelled conformers, each
    minimised with it (no restraint) from the labeler's minimum, against the labeler's;
    both relative to their mean (as the relaxed loss fits them)."""
    from gnnff.train.scan import ScanPoint, mm_profile

    start = [ScanPoint(0.0, math.nan, 0.0, x) for x in conformers.positions]
    reference = conformers.energies - conformers.energies.mean()
    out = {}
    for name, system in systems.items():
        e = np.array([p.energy for p in mm_profile(system, start, None)])
        out[name] = _rmse((e - e.mean()) * KJ_TO_KCAL, reference * KJ_TO_KCAL)
    return out


def _pooled_conformers(rows: list[dict], key: str) -> float:
    """RMSE over all molecules' conformers (each row's RMSE weighted by its conformer count)."""
    total = sum(r["conformers"] for r in rows)
    return math.sqrt(sum(r[key] ** 2 * r["conformers"] for r in rows) / total) if total else float("nan")


def _read(inputs: Sequence[str | os.PathLike]) -> tuple[list[Chem.Mol], list[dict]]:
    from gnnff.chem.molecule import load_molecule, looks_like_path, read_records, with_conformer

    mols, failed = [], []
    for item in inputs:
        records = read_records(item) if looks_like_path(str(item)) or Path(item).is_file() else None
        if records is None:  # SMILES (or a molecule object): a bad one is reported like a bad record
            try:
                mols.append(with_conformer(load_molecule(item)))
            except GnnffError as err:
                failed.append({"molecule": str(item), "error": str(err)})
            continue
        for record in records:
            if record.error is not None:
                failed.append({"molecule": record.label, "error": str(record.error)})
            else:
                mols.append(with_conformer(record.mol))
    return mols, failed


def finetune(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
             settings: FinetuneSettings = FinetuneSettings(), work: str | os.PathLike | None = None,
             overwrite: bool = False, workers: int = 1, labeler=None, report: str | os.PathLike | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``settings.base`` on torsion drives of the molecules in ``inputs`` (files
    or SMILES); write the checkpoint ``output`` and the labels and report under ``work``
    (default: ``output`` without its suffix + ``.finetune``). Returns the summary (also
    ``work/report/summary.json``). A molecule that cannot be labelled is reported and
    left out; none left is an InputError. ``workers`` > 1 labels that many molecules at
    once, each in its own single-threaded process. ``labeler``: a labeler object to use
    instead of ``settings.labeler`` by name (in this process only). ``report``: the report
    folder (default ``work/report``)."""
    from tqdm import tqdm

    from gnnff.api import assign_parameters
    from gnnff.chem.molecule import name_of
    from gnnff.nn.checkpoint import GNNSource, load_checkpoint, save_checkpoint
    from gnnff.sources.models import DEFAULT_MODEL, get_model
    from gnnff.train.labelers import get_labeler
    from gnnff.train.scan import OPTIMISER, plot_profiles

    output = Path(output)
    if output.suffix != ".pt":
        raise InputError(f"{output}: the fine-tuned model is a checkpoint; name it *.pt")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; --overwrite replaces it")
    work = Path(work) if work is not None else output.with_suffix(".finetune")
    base = get_model(settings.base or DEFAULT_MODEL)
    if not isinstance(base, GNNSource):
        raise InputError(f"finetune: base model '{settings.base}' is not a gnnff network (a classical force "
                         "field has no heads to tune); give a gnnff model name or checkpoint")
    valence_heads(base.network, settings.terms)  # an unknown --terms fails before any labelling
    if labeler is not None and workers > 1:
        raise InputError("finetune: a labeler object runs in this process only; use workers=1 or a labeler name")
    labeler = labeler if labeler is not None else get_labeler(settings.labeler)
    mols, failed = _read(inputs)
    if not mols and not failed:
        raise InputError("finetune: no molecule given")
    started = time.perf_counter()
    served = []
    for mol in mols:  # the base model's domain first: no labelling for a molecule it cannot serve
        try:
            base._check(mol, name_of(mol))
            served.append(mol)
        except GnnffError as err:
            failed.append({"molecule": name_of(mol), "error": str(err)})
    mols = served
    labelled, failures = _label_all(mols, labeler, work / "labels" / labeler.name, settings, workers=workers,
                                    progress=progress)
    failed += failures
    if not labelled:
        raise InputError(f"finetune: no molecule could be labelled ({failed[0]['error'] if failed else ''})")
    labelling = time.perf_counter() - started

    start = time.perf_counter()
    network = copy.deepcopy(base.network)
    fitted = [fitted_scans(scans, settings) for _, scans, _ in labelled]
    data = [_training_data(mol, scans, settings.hold_out, confs)
            for (mol, _, confs), scans in zip(labelled, fitted)]
    profiles = [q for (mol, _, confs), scans in zip(labelled, fitted)
                for q in _profile_data(mol, scans, settings.hold_out, confs if settings.relax_conformers else None)]
    driven = driven_rows(data, fitted)
    corrections = (driven_corrections(data, fitted, base.corrections) if settings.tune == "torsions"
                   else base.corrections)
    history, corrections = fit(network, data, settings, features=base.config.features, progress=progress,
                               profiles=profiles, driven=driven, corrections=corrections)
    fitting = time.perf_counter() - start

    payload = load_checkpoint(base.path)
    record = {
        "base": settings.base or DEFAULT_MODEL, "labeler": labeler.method, "optimiser": OPTIMISER,
        "settings": asdict(settings),
        "molecules": [{"name": name_of(m), "smiles": Chem.MolToSmiles(Chem.RemoveHs(m)),
                       "scans": [list(s.torsion) for s in scans],
                       "held_out_scans": [list(s.torsion) for s in scans[len(fit_scans):]],
                       "conformers": 0 if confs is None else len(confs.energies)}
                      for (m, scans, confs), fit_scans in zip(labelled, fitted)],
        "trained": (["torsion corrections"] if settings.tune == "torsions"
                    else valence_heads(network, settings.terms)),
        "frozen": ["network"] if settings.tune == "torsions" else ["gnn", NONBONDED.name],
        "corrections": 0 if corrections is None else len(corrections),
        "final": history[-1] if history else None,
    }
    series = {"smiles": [m["smiles"] for m in record["molecules"]], "similarity": settings.similarity,
              "base": record["base"]}
    save_checkpoint(output, network, base.config, elements=sorted(base.elements), ions_only=sorted(base.ions_only),
                    training={**payload.get("training", {}), "finetune": record}, series=series,
                    extra=None if corrections is None else {"corrections": corrections.to_payload()})
    tuned = GNNSource(output)

    start = time.perf_counter()
    report = Path(report) if report is not None else work / "report"
    report.mkdir(parents=True, exist_ok=True)
    rows, conformer_rows = [], []
    sources = {"base": base, "tuned": tuned}
    for (mol, scans, confs), fit_scans in tqdm(list(zip(labelled, fitted)), desc="report", unit="mol",
                                               disable=not progress, leave=False):
        systems = {k: assign_parameters(mol, model=source).to_openmm() for k, source in sources.items()}
        if confs is not None and len(confs.energies) >= 2:
            conformer_rows.append({"molecule": name_of(mol), "conformers": len(confs.energies),
                                   "labelling_seconds": round(confs.seconds, 1),
                                   **{f"{k}_rmse": v for k, v in _conformer_rmse(confs, systems).items()}})
        for n, s in enumerate(scans):  # each model's System once per molecule, whatever its number of scans
            profiles = _profiles(s, systems)
            whole = n >= len(fit_scans)  # a scan held out entirely
            held = np.ones(len(s.targets), dtype=bool) if whole else s.held_out(settings.hold_out)
            name = f"{_slug(mol)}-{'-'.join(map(str, s.torsion))}"
            plot_profiles(report / f"{name}.png", s.targets.tolist(),
                          {labeler.name: profiles["reference"], record["base"]: profiles["base"],
                           output.stem: profiles["tuned"]}, name_of(mol), s.torsion, held_out=held)
            row = {"molecule": name_of(mol), "torsion": "-".join(map(str, s.torsion)), "plot": f"{name}.png",
                   "points": len(s.targets), "held_out": int(held.sum()), "scan_held_out": whole,
                   "labelling_seconds": round(s.seconds, 1)}
            for k in ("base", "tuned"):
                row[f"{k}_fitted_rmse"] = _rmse(profiles[k][~held], profiles["reference"][~held])
                row[f"{k}_held_out_rmse"] = _rmse(profiles[k][held], profiles["reference"][held])
            rows.append(row)
    atomic_write_csv(report / "scans.csv", rows)
    if conformer_rows:
        atomic_write_csv(report / "conformers.csv", conformer_rows)
    _plot_history(report / "fit.png", history)
    evaluating = time.perf_counter() - start
    summary = {"model": str(output), "base": record["base"], "labeler": labeler.name,
               "molecules": len(labelled), "scans": len(rows), "failed": failed,
               "held_out_rmse": {k: _pooled([r for r in rows if not r["scan_held_out"]], f"{k}_held_out_rmse")
                                 for k in ("base", "tuned")},
               "held_out_scan_rmse": {k: _pooled([r for r in rows if r["scan_held_out"]], f"{k}_held_out_rmse")
                                      for k in ("base", "tuned")},
               "held_out_scans": sum(r["scan_held_out"] for r in rows),
               "fitted_rmse": {k: _pooled(rows, f"{k}_fitted_rmse") for k in ("base", "tuned")},
               "conformer_rmse": {k: _pooled_conformers(conformer_rows, f"{k}_rmse") for k in ("base", "tuned")},
               "seconds": {"labelling": labelling, "fitting": fitting, "report": evaluating,
                           "total": time.perf_counter() - started},
               "settings": asdict(settings), "work": str(work), "report": str(report)}
    atomic_write_text(report / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


_WORKER: dict[str, Any] = {}


def _worker_start(labeler: str) -> None:
    from gnnff.train.labelers import get_labeler

    torch.set_num_threads(1)
    _WORKER["labeler"] = get_labeler(labeler)


def _labels(mol: Chem.Mol, labeler, folder: Path, settings: FinetuneSettings
            ) -> tuple[list[ScanLabels], ConformerLabels | None]:
    """A molecule's drives (first: they check the labeler's domain) and conformers."""
    scans = label_molecule(mol, labeler, folder, settings)
    return scans, label_conformers(mol, labeler, folder, settings)


def _worker_label(mol: Chem.Mol, folder: Path, settings: FinetuneSettings
                  ) -> tuple[list[ScanLabels], ConformerLabels | None]:
    return _labels(mol, _WORKER["labeler"], folder, settings)


def _unexpected(mol: Chem.Mol, err: Exception) -> ParametrizationError:
    """A labelling failure that is not a gnnff error, as one naming the molecule."""
    from gnnff.chem.molecule import name_of

    return ParametrizationError(f"{name_of(mol)}: labelling failed ({type(err).__name__}: {err})")


def _label_all(mols: list[Chem.Mol], labeler, root: Path, settings: FinetuneSettings, *, workers: int,
               progress: bool) -> tuple[list[tuple[Chem.Mol, list[ScanLabels], ConformerLabels | None]], list[dict]]:
    """Labels of every molecule (in input order: the molecule, its drives, its conformers)
    and the failures, one process per molecule at a time when ``workers`` > 1; a bar over the scans."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm import tqdm

    from gnnff.chem.molecule import name_of
    from gnnff.train.scan import rotatable_torsions

    results: dict[int, tuple[list[ScanLabels], ConformerLabels | None] | GnnffError] = {}
    bar = tqdm(total=sum(len(rotatable_torsions(m)[:settings.scans]) for m in mols), unit="scan", desc="label",
               disable=not progress)
    if workers <= 1:
        for i, mol in enumerate(mols):
            try:
                results[i] = _labels(mol, labeler, root / _slug(mol), settings)
            except GnnffError as err:
                results[i] = err
            except Exception as err:  # a numerical failure of one molecule: reported, the others go on
                results[i] = _unexpected(mol, err)
            bar.update(len(rotatable_torsions(mol)[:settings.scans]))
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_start,
                                 initargs=(settings.labeler,)) as pool:
            futures = {pool.submit(_worker_label, mol, root / _slug(mol), settings): i for i, mol in enumerate(mols)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except GnnffError as err:
                    results[i] = err
                except Exception as err:  # a numerical failure of one molecule: reported, the others go on
                    results[i] = _unexpected(mols[i], err)
                bar.update(len(rotatable_torsions(mols[i])[:settings.scans]))
    bar.close()
    labelled, failed = [], []
    for i, mol in enumerate(mols):
        if isinstance(results[i], GnnffError):
            failed.append({"molecule": name_of(mol), "error": str(results[i])})
            if progress:
                tqdm.write(f"skipped: {results[i]}")
        else:
            labelled.append((mol, *results[i]))
    return labelled, failed


def _pooled(rows: list[dict], key: str) -> float:
    """RMSE over all scans' points (each row's RMSE weighted by its point count)."""
    weights = [r["held_out"] if "held_out" in key else r["points"] - r["held_out"] for r in rows]
    values = [(r[key], w) for r, w in zip(rows, weights) if w and math.isfinite(r[key])]
    total = sum(w for _, w in values)
    return math.sqrt(sum(v**2 * w for v, w in values) / total) if total else float("nan")


def _plot_history(path: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for key, label in (("energy_rmse", "energy RMSE (kcal/mol)"), ("force_rmse", "force RMSE (kcal/mol/A)"),
                       ("profile_rmse", "relaxed-profile RMSE (kcal/mol)")):
        ax.plot([h[key] for h in history], label=label)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
