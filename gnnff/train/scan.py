"""Torsion drives: constrained-optimisation scans of one dihedral, reference and MM side by side.

A drive sets the dihedral ``i-j-k-l`` to each value of a grid (``step`` degrees) by
minimising the energy with that dihedral constrained, everything else free (geomeTRIC,
the optimiser of TorsionDrive); each point starts from a neighbour's optimised
geometry, going once round the circle in each direction from the input conformer, and
keeps the lower of the two energies it reaches (hysteresis of one-directional scans).
The MM profile takes each reference geometry, minimises it with the model's System
(OpenMM) with the dihedral held by a stiff restraint, and reports the System's energy
without the restraint.

Any energy function ``f(positions nm (n, 3)) -> (energy kJ/mol, forces kJ/mol/nm)``
can drive: a labeler (:mod:`gnnff.train.labelers`) or an OpenMM System
(:func:`system_energy`).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import torch
from rdkit import Chem

from gnnff.errors import InputError, ParametrizationError
from gnnff.mm.energy import dihedrals
from gnnff.units import ANGSTROM_TO_NM, KJ_TO_KCAL, NM_TO_ANGSTROM

__all__ = ["ScanPoint", "EnergyFunction", "check_torsion", "dihedral_deg", "constrained_minimise", "drive", "Atoms",
           "mm_profile", "moving_atoms", "rotatable_torsions", "set_dihedral", "system_energy", "labeler_energy",
           "scan", "plot_profiles", "HARTREE_KJ", "OPTIMISER", "RESTRAINT_K"]

#: ``f(positions (n_atoms, 3) nm) -> (energy kJ/mol, forces (n_atoms, 3) kJ/mol/nm)``
EnergyFunction = Callable[[np.ndarray], tuple[float, np.ndarray]]

#: How every scan point is optimised (recorded in summaries)
OPTIMISER = "geomeTRIC (TRIC coordinates, dihedral constrained, default convergence)"

#: kJ/mol per hartree (CODATA 2018), the optimiser's unit of energy
HARTREE_KJ = 2625.4996394799


@dataclass(frozen=True)
class ScanPoint:
    """One grid point of a drive: target and reached dihedral (degrees), the energy
    (kJ/mol) and the optimised positions (nm)."""

    target_deg: float
    dihedral_deg: float
    energy: float
    positions: np.ndarray


def check_torsion(mol: Chem.Mol, torsion: tuple[int, int, int, int], label: str = "molecule") -> tuple[int, ...]:
    """``torsion`` as four atom indices (0-based) of a drivable dihedral: bonded i-j, j-k,
    k-l, all different, the central bond j-k in no ring. InputError naming the atoms otherwise."""
    if len(torsion) != 4:
        raise InputError(f"{label}: a torsion is four atom indices, got {len(torsion)}")
    n = mol.GetNumAtoms()
    atoms = tuple(int(a) for a in torsion)
    bad = [a for a in atoms if not 0 <= a < n]
    if bad:
        raise InputError(f"{label}: torsion atom {bad[0]} does not exist (the molecule has atoms 0..{n - 1}, "
                         "hydrogens included; indices are 0-based)")
    if len(set(atoms)) != 4:
        raise InputError(f"{label}: torsion {atoms} repeats an atom; give four different atoms")
    for a, b in zip(atoms, atoms[1:]):
        if mol.GetBondBetweenAtoms(a, b) is None:
            raise InputError(f"{label}: atoms {a} and {b} of torsion {atoms} are not bonded; give a chain "
                             "i-j-k-l of bonded atoms")
    central = mol.GetBondBetweenAtoms(atoms[1], atoms[2])
    if central.IsInRing():
        raise InputError(f"{label}: the central bond {atoms[1]}-{atoms[2]} of torsion {atoms} is in a ring and "
                         "cannot be driven round; choose a rotatable bond")
    return atoms


def rotatable_torsions(mol: Chem.Mol) -> list[tuple[int, int, int, int]]:
    """The torsions worth scanning: one per symmetry-unique rotatable bond.

    A bond qualifies when it is single, in no ring, neither atom is linear (sp), and both
    its atoms have a heavy-atom neighbour besides each other (so central torsions and ring-substituent torsions
    qualify; a methyl, hydroxyl or amine rotor at the end of a chain, whose rotation moves
    only hydrogens, does not). Bonds equivalent by symmetry (RDKit canonical ranks without
    tie breaking) are scanned once. The outer atoms are the heavy neighbours of highest
    rank (ties: lowest index). Sorted by the central atoms.
    """
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    seen, out = set(), []
    for bond in mol.GetBonds():
        j, k = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing():
            continue
        if Chem.HybridizationType.SP in (bond.GetBeginAtom().GetHybridization(), bond.GetEndAtom().GetHybridization()):
            continue  # a bond to a linear atom (alkyne, nitrile): its dihedral is undefined
        outer = []
        for centre, other in ((j, k), (k, j)):
            heavy = [n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors()
                     if n.GetIdx() != other and n.GetAtomicNum() > 1]
            outer.append(max(heavy, key=lambda a: (ranks[a], -a)) if heavy else None)
        if None in outer:
            continue
        key = tuple(sorted((ranks[j], ranks[k])))
        if key in seen:
            continue
        seen.add(key)
        i, l = outer
        out.append((i, j, k, l) if j < k else (l, k, j, i))
    return sorted(out, key=lambda t: (t[1], t[2]))


def moving_atoms(mol: Chem.Mol, torsion: tuple[int, ...]) -> np.ndarray:
    """Atoms on the ``k`` side of the central bond ``j-k`` (``k`` included): those a change of
    the dihedral rotates."""
    j, k = torsion[1], torsion[2]
    seen, todo = {k}, [k]
    while todo:
        atom = mol.GetAtomWithIdx(todo.pop())
        for other in (n.GetIdx() for n in atom.GetNeighbors()):
            if other not in seen and not (atom.GetIdx() == k and other == j):
                seen.add(other)
                todo.append(other)
    return np.array(sorted(seen), dtype=np.int64)


def set_dihedral(positions: np.ndarray, torsion: tuple[int, ...], moving: np.ndarray, target_deg: float) -> np.ndarray:
    """``positions`` with the ``moving`` atoms rotated rigidly about the ``j-k`` axis so that
    the dihedral is ``target_deg`` (a new array)."""
    x = np.array(positions, dtype=np.float64)
    j, k = torsion[1], torsion[2]
    angle = math.radians(target_deg - dihedral_deg(x, torsion))
    axis = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
    v = x[moving] - x[j]
    cos, sin = math.cos(angle), math.sin(angle)
    x[moving] = x[j] + v * cos + np.cross(axis, v) * sin + np.outer(v @ axis, axis) * (1 - cos)
    return x


def dihedral_deg(positions: np.ndarray, torsion: tuple[int, ...]) -> float:
    """Dihedral ``i-j-k-l`` of ``positions`` (n, 3) in degrees, in (-180, 180]."""
    x = torch.as_tensor(np.asarray(positions, dtype=np.float64))[None]
    i, j, k, l = (torch.tensor([a]) for a in torsion)
    return math.degrees(float(dihedrals(x, i, j, k, l)[0, 0]))


@dataclass(frozen=True)
class Atoms:
    """What the optimiser needs of a molecule besides positions: element symbols and bonds
    (the molecular graph, so internal coordinates never guess bonds from distances)."""

    symbols: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, mol: Chem.Mol) -> "Atoms":
        return cls(tuple(a.GetSymbol() for a in mol.GetAtoms()),
                   tuple((b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()))


def _engine(molecule, energy: EnergyFunction):
    """A geomeTRIC engine around an :data:`EnergyFunction` (atomic units in; kJ/mol and nm out)."""
    from geometric.engine import Engine
    from geometric.nifty import bohr2ang

    nm_per_bohr = bohr2ang * ANGSTROM_TO_NM

    class Wrapped(Engine):
        def calc_new(self, coords, dirname):
            e, f = energy(np.asarray(coords, dtype=np.float64).reshape(-1, 3) * nm_per_bohr)
            return {"energy": float(e) / HARTREE_KJ, "gradient": -np.asarray(f).ravel() * nm_per_bohr / HARTREE_KJ}

    return Wrapped(molecule)


def constrained_minimise(energy: EnergyFunction, atoms: Atoms, x0: np.ndarray, torsion: tuple[int, ...] | None,
                         target_deg: float | None, *, max_iterations: int = 300) -> tuple[np.ndarray, float]:
    """Minimise ``energy`` from ``x0`` (nm) with the dihedral ``torsion`` held at ``target_deg``:
    geomeTRIC in translation-rotation internal coordinates (TRIC) with the dihedral as a
    constraint, its default convergence criteria (the ones TorsionDrive uses; typically
    10-40 energy and gradient evaluations). ``torsion`` None: no constraint (a plain
    minimisation). Returns the optimised positions (nm) and the energy there (kJ/mol).
    ParametrizationError when it does not converge."""
    import logging
    import tempfile

    from geometric.errors import Error as GeometricError
    from geometric.internal import DelocalizedInternalCoordinates
    from geometric.molecule import Molecule
    from geometric.nifty import ang2bohr
    from geometric.optimize import Optimize, OptParams
    from geometric.prepare import parse_constraints

    for name in ("geometric", "geometric.nifty"):  # its optimiser narrates every step
        logging.getLogger(name).setLevel(logging.ERROR)
    molecule = Molecule()
    molecule.elem = list(atoms.symbols)
    molecule.xyzs = [np.asarray(x0, dtype=np.float64) * NM_TO_ANGSTROM]
    molecule.bonds = list(atoms.bonds)
    molecule.build_topology(force_bonds=False)
    if torsion is None:
        constraints, cvals = None, None
    else:
        spec = "$set\ndihedral {} {} {} {} {:.6f}\n".format(*(a + 1 for a in torsion), target_deg)
        constraints, values = parse_constraints(molecule, spec)
        cvals = values[0]
    coordinates = DelocalizedInternalCoordinates(molecule, build=True, connect=False, addcart=False,
                                                 constraints=constraints, cvals=cvals)
    params = OptParams(maxiter=max_iterations, enforce=0.1, qccnv=False)
    start = molecule.xyzs[0].ravel() * ang2bohr
    for attempt in range(2):
        try:
            with tempfile.TemporaryDirectory(prefix="gnnff-scan-") as scratch:
                progress = Optimize(start, molecule, coordinates, _engine(molecule, energy), scratch, params)
            break
        except (GeometricError, np.linalg.LinAlgError) as err:
            # a BFGS update can break the Hessian's eigensolver (seen once in 26 ANI-2x drives):
            # a second try from the start nudged by 1e-4 bohr takes another path
            failure = err
            start = start + np.random.default_rng(attempt).normal(scale=1e-4, size=start.shape)
    else:
        where = "minimisation" if torsion is None else f"constrained optimisation at {target_deg:g} degrees"
        raise ParametrizationError(f"{where} did not converge "
                                   f"({type(failure).__name__}); try a smaller --step") from None
    x = np.asarray(progress.xyzs[-1], dtype=np.float64) * ANGSTROM_TO_NM
    return x, float(progress.qm_energies[-1]) * HARTREE_KJ


def _targets(start_deg: float, step: float) -> list[float]:
    n = round(360.0 / step)
    if abs(n * step - 360.0) > 1e-9 or n < 2:
        raise InputError(f"scan step {step} degrees must divide 360 into at least 2 points")
    first = step * round(start_deg / step)
    return [((first + s * step + 180.0) % 360.0) - 180.0 for s in range(n)]


def drive(energy: EnergyFunction, atoms: Atoms, x0: np.ndarray, torsion: tuple[int, ...], moving: np.ndarray, *,
          step: float = 15.0, progress: Callable[[int], None] | None = None, **options) -> list[ScanPoint]:
    """The scan of ``torsion`` from the conformer ``x0`` (nm): one point per grid value
    (sorted from -180 degrees), each the lower-energy end of a forward and a backward pass
    (both from the start point: 2n - 1 optimisations for n points).
    Each optimisation starts from the previous point's geometry with the ``moving`` atoms
    (:func:`moving_atoms`) turned rigidly to the new value, so the constraint starts
    satisfied. An optimisation that fails is left out of its pass (the next one starts
    from the turned geometry); ParametrizationError only when a grid point fails in both.
    ``progress(n)`` is called after each optimisation; ``options`` go to
    :func:`constrained_minimise`."""
    forward = _targets(dihedral_deg(x0, torsion), step)
    best: dict[float, ScanPoint] = {}
    failures: dict[float, ParametrizationError] = {}
    first = round(forward[0], 6)
    # the backward pass starts from the forward pass's first point (the same optimisation)
    for order in (forward, forward[1:][::-1]):
        x = best[first].positions if first in best else np.asarray(x0, dtype=np.float64)
        for target in order:
            key = round(target, 6)
            start = set_dihedral(x, torsion, moving, target)
            try:
                x, e = constrained_minimise(energy, atoms, start, torsion, target, **options)
            except ParametrizationError as err:  # the other pass may reach this point; go on from here
                failures[key], x = err, start
            else:
                if key not in best or e < best[key].energy:
                    best[key] = ScanPoint(target, dihedral_deg(x, torsion), e, x.copy())
            if progress is not None:
                progress(1)
    missing = sorted(set(failures) - set(best))
    if missing:
        raise failures[missing[0]]
    return [best[key] for key in sorted(best)]


#: Force constant of the dihedral restraint of MM profiles, kJ/mol/rad^2: a torque of
#: 10 kJ/mol/rad moves the dihedral 1e-4 rad off its grid value.
RESTRAINT_K = 1.0e5
#: OpenMM LocalEnergyMinimizer tolerance of MM profiles (largest force, kJ/mol/nm)
MM_TOLERANCE = 0.01


def mm_profile(system: openmm.System, reference: list[ScanPoint], torsion: tuple[int, ...] | None, *,
               platform: str = "Reference", progress: Callable[[int], None] | None = None) -> list[ScanPoint]:
    """Each reference point's geometry minimised with ``system`` (OpenMM's L-BFGS) under a
    stiff harmonic restraint holding the dihedral at the point's grid value
    (:data:`RESTRAINT_K`, in a force group of its own); the energy reported is the
    System's without the restraint. Milliseconds per point, where geomeTRIC's
    internal-coordinate overhead would dominate a cheap MM energy. ``torsion`` None:
    plain minimisations (conformers; the points' dihedrals are reported as nan)."""
    system = copy.deepcopy(system)
    group = 31
    if torsion is not None:
        restraint = openmm.CustomTorsionForce("0.5*k*d^2; d = atan2(sin(theta - theta0), cos(theta - theta0))")
        restraint.addGlobalParameter("k", RESTRAINT_K)
        restraint.addGlobalParameter("theta0", 0.0)
        restraint.addTorsion(*(int(a) for a in torsion), [])
        restraint.setForceGroup(group)
        if any(f.getForceGroup() == group for f in system.getForces()):
            raise ParametrizationError(f"the System uses force group {group}, which the scan restraint needs")
        system.addForce(restraint)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    others = sum(1 << g for g in range(32) if g != group)
    kj = openmm.unit.kilojoule_per_mole
    out = []
    for point in reference:
        if torsion is not None:
            context.setParameter("theta0", math.radians(point.target_deg))
        context.setPositions(np.asarray(point.positions, dtype=np.float64))
        openmm.LocalEnergyMinimizer.minimize(context, MM_TOLERANCE, 0)
        state = context.getState(getEnergy=True, getPositions=True, groups=others)
        x = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        reached = dihedral_deg(x, torsion) if torsion is not None else math.nan
        out.append(ScanPoint(point.target_deg, reached, state.getPotentialEnergy().value_in_unit(kj), np.asarray(x)))
        if progress is not None:
            progress(1)
    return out


def system_energy(system: openmm.System, platform: str = "Reference") -> EnergyFunction:
    """The energy function of an OpenMM System (one Context, reused)."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    kj, kj_nm = openmm.unit.kilojoule_per_mole, openmm.unit.kilojoule_per_mole / openmm.unit.nanometer

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        context.setPositions(np.asarray(x, dtype=np.float64))
        state = context.getState(getEnergy=True, getForces=True)
        return state.getPotentialEnergy().value_in_unit(kj), state.getForces(asNumpy=True).value_in_unit(kj_nm)

    return evaluate


def labeler_energy(labeler, atomic_numbers: np.ndarray, charge: int) -> EnergyFunction:
    """The energy function of a labeler (:func:`gnnff.train.labelers.get_labeler`)."""
    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        energies, forces = labeler(atomic_numbers, np.asarray(x)[None], charge)
        return float(energies[0]), np.asarray(forces[0])

    return evaluate


def _relative_kcal(points: list[ScanPoint]) -> np.ndarray:
    e = np.array([p.energy for p in points]) * KJ_TO_KCAL
    return e - e.min()


def scan(molecule, torsion: tuple[int, int, int, int], output: str | os.PathLike, *, labeler: str = "ani-2x",
         model=None, step: float = 15.0, overwrite: bool = False, progress: bool = True) -> dict:
    """One torsion drive with a labeler and the model's profile on its geometries; writes
    ``output/``: ``profile.csv`` (target, reached dihedrals, relative energies in
    kcal/mol), ``profile.png``, ``scan.sdf`` (the labeler's optimised geometries, one
    record per point) and ``summary.json`` (RMSE of the MM profile against the labeler's,
    each relative to its own minimum; timings; settings). Returns the summary.

    ``molecule``: anything :func:`gnnff.load_molecule` reads (its first conformer, else an
    ETKDG one, starts the drive); ``torsion``: 0-based atom indices, hydrogens included.
    """
    import json

    from gnnff.api import assign_parameters
    from gnnff.chem.molecule import load_molecule, name_of, positions_nm, with_conformer
    from gnnff.files import atomic_write_csv, atomic_write_text
    from gnnff.progress import progress as bar_of
    from gnnff.threads import serial_numerics
    from gnnff.train.labelers import get_labeler

    out = Path(output)
    if (out / "summary.json").exists() and not overwrite:
        raise InputError(f"{out}: a scan is already there (summary.json); --overwrite replaces it")
    mol = with_conformer(load_molecule(molecule))
    label = name_of(mol)
    atoms = check_torsion(mol, torsion, label)
    result = assign_parameters(mol, model=model)
    reference_energy = labeler_energy(get_labeler(labeler), np.array([a.GetAtomicNum() for a in mol.GetAtoms()]),
                                      Chem.GetFormalCharge(mol))
    n = len(_targets(0.0, step))
    bar = bar_of(total=3 * n - 1, unit="opt", desc=f"scan {atoms}", disable=not progress)
    start = time.perf_counter()
    try:
        with serial_numerics():  # geomeTRIC's many small matrices: a second BLAS thread only waits
            reference = drive(reference_energy, Atoms.of(mol), positions_nm(mol)[0], atoms, moving_atoms(mol, atoms),
                              step=step, progress=bar.update)
    except ParametrizationError as err:  # outside the labeler's domain
        bar.close()
        raise ParametrizationError(f"{label}: {labeler}: {err}") from None
    labelling = time.perf_counter() - start
    mm = mm_profile(result.to_openmm(), reference, atoms, progress=bar.update)
    bar.close()
    ref_kcal, mm_kcal = _relative_kcal(reference), _relative_kcal(mm)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"target_deg": r.target_deg, "reference_dihedral_deg": round(r.dihedral_deg, 4),
             "mm_dihedral_deg": round(m.dihedral_deg, 4), "reference_kcal_mol": float(a), "mm_kcal_mol": float(b)}
            for r, m, a, b in zip(reference, mm, ref_kcal, mm_kcal)]
    atomic_write_csv(out / "profile.csv", rows)
    _write_sdf(out / "scan.sdf", mol, reference)
    plot_profiles(out / "profile.png", [p.target_deg for p in reference], {labeler: ref_kcal, result.model: mm_kcal},
                  label, atoms)
    summary = {"molecule": label, "torsion": list(atoms), "labeler": labeler, "model": result.model, "step_deg": step,
               "points": len(reference), "rmse_kcal_mol": float(np.sqrt(np.mean((mm_kcal - ref_kcal) ** 2))),
               "max_dihedral_error_deg": max(abs((p.dihedral_deg - p.target_deg + 180.0) % 360.0 - 180.0)
                                             for p in reference),
               "labelling_seconds": labelling, "seconds": time.perf_counter() - start,
               "optimiser": OPTIMISER}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _write_sdf(path: Path, mol: Chem.Mol, points: list[ScanPoint]) -> None:
    from gnnff.files import atomic_write

    def write(tmp: str) -> None:
        writer = Chem.SDWriter(tmp)
        for point in points:
            copy = Chem.Mol(mol)
            copy.RemoveAllConformers()
            conformer = Chem.Conformer(mol.GetNumAtoms())
            for a, xyz in enumerate(point.positions * NM_TO_ANGSTROM):
                conformer.SetAtomPosition(a, xyz.tolist())
            copy.AddConformer(conformer, assignId=True)
            copy.SetProp("target_dihedral_deg", f"{point.target_deg:g}")
            copy.SetProp("energy_kj_mol", repr(point.energy))
            writer.write(copy)
        writer.close()

    atomic_write(path, write)


def plot_profiles(path: Path, angles: list[float], profiles: dict[str, np.ndarray], title: str,
                  atoms: tuple[int, ...], held_out: np.ndarray | None = None) -> None:
    """A PNG of relative-energy profiles (kcal/mol) against the driven dihedral; the first
    profile is the reference. ``held_out``: points of the reference not used in fitting
    (drawn as open circles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gnnff.files import atomic_write

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, (name, values) in enumerate(profiles.items()):
        ax.plot(angles, values, ("o-", "s--", "^-.", "d:")[k % 4], label=name, markersize=4)
    if held_out is not None and held_out.any():
        reference = next(iter(profiles.values()))
        ax.plot(np.asarray(angles)[held_out], reference[held_out], "o", markersize=9, markerfacecolor="none",
                color="black", label="held out")
    ax.set_xlabel(f"dihedral {'-'.join(map(str, atoms))} (degrees)")
    ax.set_ylabel("relative energy (kcal/mol)")
    ax.set_title(title[:60], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
