"""Neat-liquid densities: a packmol box, NPT molecular dynamics in OpenMM, density with its
statistical error.

Protocol (the same for every force field): ``molecules`` copies of the molecule packed by
packmol into a cubic box at 85 % of the experimental density (2 Å tolerance); one gnnff
ffxml template (the molecule's parameters) in ``openmm.app.ForceField``; PME, 0.9 nm
cutoff with the long-range dispersion correction, H-bond constraints; energy
minimisation, then Langevin (BAOAB, 1/ps) with a Monte Carlo barostat at the experimental
temperature and pressure: ``equilibration_ps`` discarded, then ``production_ps`` sampled
every ``sample_ps``. The density is the mean of total mass / box volume over the
production samples; its error is the standard error corrected by the statistical
inefficiency (pymbar). The run writes an OpenMM checkpoint every ``checkpoint_ps`` and
resumes from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from gnnff.api import Parametrized
from gnnff.chem.molecule import name_of, with_conformer
from gnnff.condensed.common import require, template_forcefield
from gnnff.errors import InputError, SimulationError
from gnnff.files import atomic_write_text
from gnnff.openmm import atom_names, to_openmm_topology

__all__ = ["LiquidProtocol", "liquid_density", "pack_box"]

_AVOGADRO = 6.02214076e23
_NM3_TO_ML = 1e-21


@dataclass(frozen=True)
class LiquidProtocol:
    """Settings of one liquid-density run (units in the names).

    The default costs 5-15 min per liquid and force field on 2 CPU cores (1,000-2,200
    atoms at 20-60 ns/day); on a GPU use more molecules and longer runs.
    """

    molecules: int = 128
    timestep_fs: float = 2.0
    cutoff_nm: float = 0.9
    equilibration_ps: float = 50.0
    production_ps: float = 100.0
    sample_ps: float = 0.5
    checkpoint_ps: float = 10.0
    friction_per_ps: float = 1.0
    pack_fraction: float = 0.85
    platform: str | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("molecules", "timestep_fs", "cutoff_nm", "production_ps", "sample_ps", "checkpoint_ps",
                     "friction_per_ps", "pack_fraction"):
            if not getattr(self, name) > 0:
                raise InputError(f"liquid setting {name} must be positive (got {getattr(self, name)})")
        if self.equilibration_ps < 0:
            raise InputError(f"liquid setting equilibration_ps must be >= 0 (got {self.equilibration_ps})")

    def steps(self, picoseconds: float) -> int:
        return int(round(picoseconds * 1000.0 / self.timestep_fs))


def _molar_mass(result: Parametrized) -> float:
    from rdkit.Chem import Descriptors

    return float(Descriptors.MolWt(result.mol))


def pack_box(result: Parametrized, n: int, density_g_ml: float,
             seed: int = 1) -> tuple[app.Topology, np.ndarray, float]:
    """``n`` copies of the molecule packed by packmol into a cube of the given density.

    Returns the topology (one residue per copy), positions (nm) and the box edge (nm).
    """
    if shutil.which("packmol") is None:
        require("packmol", "the liquid benchmark")  # raises with the install hint
    mol = with_conformer(result.mol)
    volume_nm3 = n * _molar_mass(result) / _AVOGADRO / density_g_ml / _NM3_TO_ML
    edge_nm = volume_nm3 ** (1.0 / 3.0)
    single = to_openmm_topology(mol)
    xyz = mol.GetConformer().GetPositions()  # angstrom
    with tempfile.TemporaryDirectory(prefix="gnnff-packmol-") as tmp:
        work = Path(tmp)
        with open(work / "one.xyz", "w") as handle:
            handle.write(f"{len(xyz)}\n{name_of(mol)}\n")
            handle.writelines(f"{atom.GetSymbol()} {x:.5f} {y:.5f} {z:.5f}\n" for atom, (x, y, z) in zip(mol.GetAtoms(), xyz))
        side = edge_nm * 10.0 - 2.0  # 2 A tolerance: images across the boundary keep 2 A too
        (work / "pack.inp").write_text(
            f"tolerance 2.0\nfiletype xyz\noutput box.xyz\nseed {seed}\n"
            f"structure one.xyz\n  number {n}\n  inside cube 1.0 1.0 1.0 {side:.4f}\nend structure\n")
        with open(work / "pack.inp") as stdin:
            run = subprocess.run(["packmol"], check=False, stdin=stdin, cwd=work, capture_output=True, text=True)
        out = work / "box.xyz"
        if not out.is_file():
            tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
            raise SimulationError(f"{name_of(mol)}: packmol could not pack {n} molecules ({' '.join(tail)})")
        lines = out.read_text().splitlines()[2:]
    positions = np.array([[float(v) for v in line.split()[1:4]] for line in lines if line.strip()]) / 10.0
    if positions.shape != (n * len(xyz), 3):
        raise SimulationError(f"{name_of(mol)}: packmol wrote {len(positions)} atoms, expected {n * len(xyz)}")
    topology = app.Topology()
    names = atom_names(mol)
    bonds = [(b.atom1.index, b.atom2.index) for b in single.bonds()]
    elements = [a.element for a in single.atoms()]
    for _ in range(n):
        residue = topology.addResidue("LIG", topology.addChain())
        atoms = [topology.addAtom(name, element, residue) for name, element in zip(names, elements)]
        for i, j in bonds:
            topology.addBond(atoms[i], atoms[j])
    topology.setUnitCellDimensions(openmm.Vec3(edge_nm, edge_nm, edge_nm) * unit.nanometer)
    return topology, positions, edge_nm


def _statistical_error(series: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error corrected by the statistical inefficiency."""
    timeseries = require("pymbar.timeseries", "the liquid benchmark")
    if len(series) < 4 or np.std(series) == 0:
        return float(np.mean(series)), float("nan")
    g = max(1.0, float(timeseries.statistical_inefficiency(series)))
    return float(np.mean(series)), float(np.std(series, ddof=1) / np.sqrt(len(series) / g))


def _simulation(result: Parametrized, protocol: LiquidProtocol, temperature_k: float, pressure_bar: float,
                density_guess: float) -> tuple[app.Simulation, float]:
    topology, positions, _ = pack_box(result, protocol.molecules, protocol.pack_fraction * density_guess,
                                      seed=protocol.seed)
    forcefield = template_forcefield([result])
    system = forcefield.createSystem(topology, nonbondedMethod=app.PME,
                                     nonbondedCutoff=protocol.cutoff_nm * unit.nanometer, constraints=app.HBonds)
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setUseDispersionCorrection(True)
    system.addForce(openmm.MonteCarloBarostat(pressure_bar * unit.bar, temperature_k * unit.kelvin, 25))
    integrator = openmm.LangevinMiddleIntegrator(temperature_k * unit.kelvin, protocol.friction_per_ps / unit.picosecond,
                                                 protocol.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(protocol.seed)
    platform = openmm.Platform.getPlatformByName(protocol.platform) if protocol.platform else None
    simulation = app.Simulation(topology, system, integrator, platform)
    simulation.context.setPositions(positions * unit.nanometer)
    mass = sum(system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles()))
    return simulation, mass / _AVOGADRO / _NM3_TO_ML  # g per (nm^3 -> mL) of box


def liquid_density(result: Parametrized, *, temperature_k: float, pressure_kpa: float, density_guess_g_ml: float,
                   protocol: LiquidProtocol, workdir: str | os.PathLike, progress: Any = None) -> dict[str, Any]:
    """Density (g/mL) of the neat liquid of ``result``'s molecule.

    Parameters
    ----------
    density_guess_g_ml
        Where packing starts (times ``protocol.pack_fraction``); the experimental value.
    workdir
        Folder of the run's checkpoint (``state.xml``, ``samples.json``); an existing one
        is resumed.
    progress
        Optional tqdm-like object; ``update(ps)`` as simulated time passes.

    Returns
    -------
    dict
        ``density_g_ml``, ``density_err_g_ml``, ``samples``, ``atoms``, ``ns_per_day``,
        ``seconds`` and the protocol.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pressure_bar = pressure_kpa / 100.0
    start = time.perf_counter()
    simulation, mass_factor = _simulation(result, protocol, temperature_k, pressure_bar, density_guess_g_ml)
    state_file, samples_file = workdir / "state.xml", workdir / "samples.json"
    progress_data = {"step": 0, "volumes_nm3": []}
    if state_file.is_file() and samples_file.is_file():
        simulation.loadState(str(state_file))
        progress_data = json.loads(samples_file.read_text())
    else:
        simulation.minimizeEnergy(maxIterations=1000)
        simulation.context.setVelocitiesToTemperature(temperature_k * unit.kelvin, protocol.seed)
    equilibration = protocol.steps(protocol.equilibration_ps)
    total = equilibration + protocol.steps(protocol.production_ps)
    every = max(1, protocol.steps(protocol.sample_ps))
    checkpoint = max(every, protocol.steps(protocol.checkpoint_ps) // every * every)
    if progress is not None:
        progress.update(progress_data["step"] * protocol.timestep_fs / 1000.0)
    steps_run, run_start = 0, time.perf_counter()
    while progress_data["step"] < total:
        n = min(every, total - progress_data["step"])
        simulation.step(n)
        steps_run += n
        progress_data["step"] += n
        state = simulation.context.getState(getEnergy=True)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not np.isfinite(energy):
            raise SimulationError(f"{name_of(result.mol)}: the liquid simulation blew up at step {progress_data['step']}")
        if progress_data["step"] > equilibration:
            progress_data["volumes_nm3"].append(state.getPeriodicBoxVolume().value_in_unit(unit.nanometer**3))
        if progress is not None:
            progress.update(n * protocol.timestep_fs / 1000.0)
        if progress_data["step"] % checkpoint == 0 or progress_data["step"] == total:
            simulation.saveState(str(workdir / ".state.tmp"))
            os.replace(workdir / ".state.tmp", state_file)
            atomic_write_text(samples_file, json.dumps(progress_data))
    elapsed = time.perf_counter() - run_start
    densities = mass_factor / np.asarray(progress_data["volumes_nm3"])
    density, error = _statistical_error(densities)
    ns_per_day = steps_run * protocol.timestep_fs * 1e-6 / (elapsed / 86400.0) if steps_run else float("nan")
    return {"density_g_ml": density, "density_err_g_ml": error, "samples": len(densities),
            "atoms": simulation.topology.getNumAtoms(), "ns_per_day": ns_per_day,
            "seconds": time.perf_counter() - start, "temperature_k": temperature_k, "pressure_kpa": pressure_kpa,
            "protocol": asdict(protocol)}
