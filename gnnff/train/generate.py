"""Reference-data generation: molecules -> conformers -> labeler energies and forces -> HDF5.

Conformers: the molecule's own 3D conformers (e.g. QM minima) or RDKit ETKDG ones, plus
off-equilibrium frames from short Langevin MD at elevated temperature with a classical
force field (gnnff's Sage path, MMFF94 charges), so the data hold curvature, not only
minima, and optionally torsion-grid frames: the first conformer with one rotatable bond
at a time set to each value of a grid and relaxed with the same classical force field,
that dihedral restrained, then optionally with the labeler itself (MD at any temperature
seldom crosses torsion barriers; these frames put the barriers into the data). Output:
SPICE layout (``smiles`` mapped, ``atomic_numbers``, ``conformations`` [bohr],
``dft_total_energy`` [hartree], ``dft_total_gradient`` [hartree/bohr]) with attributes
naming the labeler and the sampling. Resumable: molecules already in the file are skipped.
Parallel: one single-threaded worker process per core; the main process is the only writer.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem
from tqdm import tqdm

from gnnff._version import __version__
from gnnff.chem.molecule import Record, mapped_smiles, positions_nm
from gnnff.errors import GnnffError
from gnnff.units import BOHR_TO_NM, HARTREE_TO_KJ

__all__ = ["SamplingConfig", "sample_conformers", "generate"]


@dataclass(frozen=True)
class SamplingConfig:
    """How conformers are made: ETKDG count (when the input has no 3D conformer), MD frames
    per starting conformer, MD temperature (K), picoseconds between frames, seed."""

    etkdg: int = 4
    md_frames: int = 8
    temperature: float = 500.0
    frame_interval_ps: float = 0.5
    seed: int = 0
    #: torsion-grid frames: grid spacing in degrees (0: none) and how many rotatable bonds
    #: (:func:`gnnff.train.scan.rotatable_torsions`, a seeded random choice) are driven
    torsion_step: float = 0.0
    max_torsions: int = 2
    #: then relax the torsion-grid frames further with the labeler itself (same restraint) for
    #: this many steps (0: the classical relaxation only), so that their energies follow the
    #: labeler's torsion profile rather than the classical force field's bond and angle strain
    torsion_relax_steps: int = 0


def _starting_conformers(mol: Chem.Mol, config: SamplingConfig) -> np.ndarray:
    if mol.GetNumConformers() and mol.GetConformer().Is3D():
        return positions_nm(mol)
    work = Chem.Mol(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = config.seed
    ids = AllChem.EmbedMultipleConfs(work, numConfs=config.etkdg, params=params)
    if not ids:
        raise GnnffError(f"{mol.GetProp('_Name')}: RDKit could not embed conformers")
    return positions_nm(work)


def _md_frames(mol: Chem.Mol, starts: np.ndarray, config: SamplingConfig) -> np.ndarray:
    import openmm
    import openmm.unit as unit

    from gnnff.api import parametrize

    system = parametrize(mol, model="sage", charges="mmff94")
    frames = []
    step = 0.001  # ps; no constraints, so 1 fs
    steps = max(1, int(round(config.frame_interval_ps / step)))
    for k, x in enumerate(starts):
        integrator = openmm.LangevinMiddleIntegrator(config.temperature * unit.kelvin, 10.0 / unit.picosecond,
                                                     step * unit.picosecond)
        integrator.setRandomNumberSeed(config.seed * 1000 + k + 1)
        platform = openmm.Platform.getPlatformByName("CPU")
        context = openmm.Context(system, integrator, platform, {"Threads": "1"})
        context.setPositions(x)
        context.setVelocitiesToTemperature(config.temperature * unit.kelvin, config.seed * 1000 + k + 1)
        for _ in range(config.md_frames):
            integrator.step(steps)
            frames.append(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return np.asarray(frames).reshape(-1, mol.GetNumAtoms(), 3)


#: restraint on the driven dihedral while a torsion-grid frame relaxes (kJ/mol/rad^2)
TORSION_RESTRAINT = 2000.0


def driven_torsions(mol: Chem.Mol, config: SamplingConfig) -> list[tuple[int, int, int, int]]:
    """The rotatable bonds whose torsion grids are sampled: up to ``max_torsions`` of
    :func:`~gnnff.train.scan.rotatable_torsions`, chosen at random with ``seed``."""
    from gnnff.train.scan import rotatable_torsions

    torsions = rotatable_torsions(mol)
    if len(torsions) <= config.max_torsions:
        return torsions
    pick = np.random.default_rng(config.seed).choice(len(torsions), config.max_torsions, replace=False)
    return [torsions[i] for i in sorted(pick)]


def _torsion_frames(mol: Chem.Mol, start: np.ndarray, config: SamplingConfig, labeler: Any = None) -> np.ndarray:
    """Torsion-grid frames of ``mol`` from ``start`` (nm): per driven torsion and grid value,
    the moving side rotated rigidly to the value, then minimised with the classical force
    field with the dihedral restrained to it, then (``config.torsion_relax_steps`` > 0)
    relaxed with ``labeler``, still restrained. ``(n_frames, n_atoms, 3)`` nm."""
    import openmm
    import openmm.unit as unit

    from gnnff.api import parametrize
    from gnnff.train.scan import moving_atoms, set_dihedral

    torsions = driven_torsions(mol, config)
    if not torsions or config.torsion_step <= 0:
        return np.zeros((0, mol.GetNumAtoms(), 3))
    if config.torsion_relax_steps > 0 and labeler is None:
        raise GnnffError("torsion_relax_steps needs the labeler to relax with")
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    grid = np.arange(-180.0, 180.0, config.torsion_step)
    system = parametrize(mol, model="sage", charges="mmff94")
    # one restraint per driven torsion, switched on one at a time (per-torsion "on")
    restraint = openmm.CustomTorsionForce("on*0.5*k*d^2; d = atan2(sin(theta-theta0), cos(theta-theta0))")
    restraint.addGlobalParameter("k", TORSION_RESTRAINT)
    restraint.addGlobalParameter("theta0", 0.0)
    restraint.addPerTorsionParameter("on")
    for torsion in torsions:
        restraint.addTorsion(*torsion, [0.0])
    system.addForce(restraint)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    frames = []
    for n, torsion in enumerate(torsions):
        for m, other in enumerate(torsions):
            restraint.setTorsionParameters(m, *other, [1.0 if m == n else 0.0])
        restraint.updateParametersInContext(context)
        moving = moving_atoms(mol, torsion)
        block = []
        for target in grid:
            context.setParameter("theta0", np.radians(target))
            context.setPositions(set_dihedral(start, torsion, moving, float(target)))
            openmm.LocalEnergyMinimizer.minimize(context, 5.0, 500)
            block.append(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        block = np.asarray(block)
        if config.torsion_relax_steps > 0:
            block = restrained_relax(lambda f: labeler(z, f, Chem.GetFormalCharge(mol)), block, torsion, grid,
                                     config.torsion_relax_steps)
        frames.append(block)
    return np.concatenate(frames).reshape(-1, mol.GetNumAtoms(), 3)


def restrained_relax(energy: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], x: np.ndarray,
                     torsion: tuple[int, int, int, int], targets_deg: np.ndarray, steps: int,
                     max_move: float = 0.002) -> np.ndarray:
    """Relax frames ``x`` (n, atoms, 3) nm on ``energy`` (frames -> kJ/mol (n,), forces (n, atoms, 3)),
    each with its dihedral ``torsion`` restrained to its ``targets_deg`` (:data:`TORSION_RESTRAINT`).

    Steepest descent, all frames in one call per step, with a step length per frame that
    grows after a step that lowered the frame's energy and halves (the step undone) after
    one that did not; no atom moves more than ``max_move`` nm per step. Returns new frames.
    """
    import torch

    from gnnff.mm.energy import dihedrals

    index = [torch.tensor([a]) for a in torsion]
    theta0 = torch.as_tensor(np.radians(targets_deg), dtype=torch.float64)

    def total(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, f = energy(frames)
        t = torch.as_tensor(frames, dtype=torch.float64).requires_grad_(True)
        d = dihedrals(t, *index)[:, 0] - theta0
        restraint = 0.5 * TORSION_RESTRAINT * torch.atan2(torch.sin(d), torch.cos(d)) ** 2
        (grad,) = torch.autograd.grad(restraint.sum(), t)
        return np.asarray(e) + restraint.detach().numpy(), np.asarray(f) - grad.numpy()

    x = np.array(x, dtype=np.float64)
    e, f = total(x)
    alpha = np.full(len(x), 1e-4)  # nm^2 mol/kJ: displacement per unit force
    for _ in range(steps):
        move = alpha[:, None, None] * f
        largest = np.linalg.norm(move, axis=-1).max(axis=1)
        move *= np.minimum(1.0, max_move / np.maximum(largest, 1e-12))[:, None, None]
        trial = x + move
        e_trial, f_trial = total(trial)
        better = e_trial < e
        x[better], e[better], f[better] = trial[better], e_trial[better], f_trial[better]
        alpha = np.where(better, alpha * 1.2, alpha * 0.5)
    return x


def sample_conformers(mol: Chem.Mol, config: SamplingConfig, labeler: Any = None) -> np.ndarray:
    """Starting conformers, then MD frames, then torsion-grid frames, ``(n_conf, n_atoms, 3)`` nm.
    ``labeler`` relaxes the torsion-grid frames when ``config.torsion_relax_steps`` > 0."""
    starts = _starting_conformers(mol, config)
    parts = [starts]
    if config.md_frames > 0:
        parts.append(_md_frames(mol, starts, config))
    if config.torsion_step > 0:
        parts.append(_torsion_frames(mol, starts[0], config, labeler))
    return np.concatenate(parts)


def _group_name(smiles: str) -> str:
    return hashlib.sha1(smiles.encode()).hexdigest()[:16]


def _init_worker(labeler: str):
    """The labeler, loaded once per worker (the pool's state), on one torch thread (in this process too)."""
    import torch

    from gnnff.train.labelers import get_labeler

    torch.set_num_threads(1)
    return get_labeler(labeler)


def _label(task: tuple[str, bytes, SamplingConfig]) -> tuple[str, dict | None, str | None]:
    from gnnff.pool import worker_state

    label, pickled, config = task
    mol = Chem.Mol(pickled)
    try:
        x = sample_conformers(mol, config, worker_state())
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
        charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
        energies, forces = worker_state()(z, x, charge)
    except GnnffError as err:
        return label, None, f"{label}: {err}"
    return label, {"smiles": mapped_smiles(mol), "z": z, "x": x, "e": energies, "f": forces}, None


def _write(handle, name: str, result: dict, attrs: dict) -> None:
    group = handle.create_group(name)
    group["smiles"] = [result["smiles"].encode()]
    group["atomic_numbers"] = result["z"].astype(np.int16)
    group["conformations"] = (result["x"] / BOHR_TO_NM).astype(np.float32)  # nm -> bohr
    group["dft_total_energy"] = result["e"] / HARTREE_TO_KJ  # kJ/mol -> hartree
    group["dft_total_gradient"] = (-result["f"] * BOHR_TO_NM / HARTREE_TO_KJ).astype(np.float32)  # -> Eh/bohr
    for key, value in attrs.items():
        group.attrs[key] = value
    handle.flush()


def generate(records: Sequence[Record], output: str | os.PathLike, *, labeler: str,
             sampling: SamplingConfig = SamplingConfig(), workers: int = 2) -> dict[str, list[str]]:
    """Label every record's conformers and append them to ``output`` (HDF5).

    Returns ``{"written": [...], "skipped": [...], "failed": [...]}`` (labels / messages).
    """
    import h5py

    from gnnff.train.labelers import LABELERS

    if labeler not in LABELERS:
        from gnnff.train.labelers import get_labeler

        get_labeler(labeler)  # raises with the known names
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, list[str]] = {"written": [], "skipped": [], "failed": []}
    with h5py.File(output, "a") as handle:
        handle.attrs["generator"] = f"gnnff {__version__}"
        tasks = []
        for record in records:
            if record.error is not None:
                report["failed"].append(str(record.error))
            elif _group_name(mapped_smiles(record.mol)) in handle:
                report["skipped"].append(record.label)
            else:
                tasks.append((record.label, record.mol.ToBinary(Chem.PropertyPickleOptions.AllProps), sampling))
        attrs = {"method": LABELERS[labeler].method, "labeler": labeler,
                 **{f"sampling_{k}": v for k, v in asdict(sampling).items()}}
        for label, result, error in _run(tasks, labeler, workers):
            if error is not None:
                report["failed"].append(error)
                continue
            _write(handle, _group_name(result["smiles"]), result, attrs)
            report["written"].append(label)
    return report


def _run(tasks: list, labeler: str, workers: int) -> Iterator[tuple[str, dict | None, str | None]]:
    """Label the tasks, yielded as they finish."""
    from gnnff.pool import WorkerPool

    progress = dict(total=len(tasks), desc=f"label ({labeler})", unit="mol", disable=None)
    with WorkerPool(workers if len(tasks) > 1 else 1, initializer=_init_worker, initargs=(labeler,)) as pool:
        for result in tqdm(pool.imap(_label, tasks, ordered=False), **progress):
            yield result.value if result.ok else (result.item[0], None, f"{result.item[0]}: {result.failure}")
