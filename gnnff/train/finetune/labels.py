"""Labels: the labeler's torsion drives of each molecule's rotatable bonds and its minimised
conformers, with off-equilibrium samples; one ``.npz`` per drive, reused by a rerun."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from rdkit import Chem

from gnnff.errors import InputError, ParametrizationError
from gnnff.files import atomic_write
from gnnff.pool import WorkerPool, worker_state
from gnnff.train.finetune.settings import FinetuneSettings
from gnnff.units import NM_TO_ANGSTROM

__all__ = ["PRUNE_RMS", "ConformerLabels", "ScanLabels", "conformer_path", "embedded_conformers", "label_all",
           "label_conformers", "label_molecule", "label_path", "labelled"]


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

def _mask(n: int, every: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    if every:
        mask[1::every] = True
    return mask


def _labeler(labeler):
    """The labelling pool's state: the labeler, given as an object (in this process) or by name."""
    if isinstance(labeler, str):
        from gnnff.train.labelers import get_labeler

        return get_labeler(labeler)
    return labeler


def _labels(task: tuple[bytes, Path, FinetuneSettings]) -> tuple[list[ScanLabels], ConformerLabels | None]:
    """A molecule's drives (first: they check the labeler's domain) and conformers, with the pool's labeler."""
    binary, folder, settings = task
    mol, labeler = Chem.Mol(binary), worker_state()
    scans = label_molecule(mol, labeler, folder, settings)
    return scans, label_conformers(mol, labeler, folder, settings)


def label_all(mols: list[Chem.Mol], labeler, root: Path, settings: FinetuneSettings, *, workers: int,
              progress: bool) -> tuple[list[tuple[Chem.Mol, list[ScanLabels], ConformerLabels | None]], list[dict]]:
    """Labels of every molecule (in input order: the molecule, its drives, its conformers)
    and the failures, one process per molecule at a time when ``workers`` > 1 (each loads
    the labeler ``settings.labeler`` by name; in this process ``labeler`` itself is used);
    a bar over the scans. A molecule whose labelling raises is reported and left out."""
    from tqdm import tqdm

    from gnnff.chem.molecule import name_of
    from gnnff.train.scan import rotatable_torsions

    def scans(mol: Chem.Mol) -> int:
        return len(rotatable_torsions(mol)[:settings.scans])

    bar = tqdm(total=sum(scans(m) for m in mols), unit="scan", desc="label", disable=not progress)
    exact = Chem.PropertyPickleOptions.AllProps | Chem.PropertyPickleOptions.CoordsAsDouble  # names, coordinates
    tasks = [(mol.ToBinary(exact), root / _slug(mol), settings) for mol in mols]
    results = [None] * len(mols)
    with WorkerPool(workers, initializer=_labeler, initargs=(labeler if workers <= 1 else settings.labeler,)) as pool:
        for result in pool.imap(_labels, tasks, ordered=False,
                                progress=lambda done: bar.update(scans(mols[done.index]))):
            results[result.index] = result
    bar.close()
    labelled, failed = [], []
    for mol, result in zip(mols, results):
        if result.ok:
            labelled.append((mol, *result.value))
            continue
        # a numerical failure of one molecule (not a gnnff error) is reported as well, and the others go on
        error = (result.failure.message if result.failure.gnnff
                 else f"{name_of(mol)}: labelling failed ({result.failure})")
        failed.append({"molecule": name_of(mol), "error": error})
        if progress:
            tqdm.write(f"skipped: {error}")
    return labelled, failed
