"""Absolute hydration free energies by alchemical decoupling, with established engines.

Thermodynamic cycle: the solute's charges are turned off, then its Lennard-Jones
interactions with the surroundings, once in a TIP3P box (PME) and once in vacuum.
Intramolecular Lennard-Jones is kept (decoupling, ``annihilate_sterics=False``);
intramolecular electrostatics is turned off in both legs, so the vacuum leg carries it:

    dG_hyd = dG_vacuum(coupled -> decoupled) - dG_solvent(coupled -> decoupled)

Engines: OpenMM for the Systems (gnnff's ffxml template + ``amber14/tip3p.xml``, PME,
H-bond constraints, rigid water, hydrogen mass repartitioning for a 4 fs step, Monte Carlo
barostat); openmmtools' ``AbsoluteAlchemicalFactory`` (soft-core sterics, exact PME
treatment of the alchemical charges, alchemical long-range dispersion correction) and
``ReplicaExchangeSampler`` (Langevin BAOAB moves, netCDF storage that resumes); MBAR
through openmmtools' analyzer (pymbar), with automatic equilibration detection and
decorrelation. Nothing alchemical is written here.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

from gnnff.api import Parametrized
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.condensed.common import require, template_forcefield
from gnnff.errors import InputError
from gnnff.openmm import to_openmm_topology
from gnnff.units import KJ_TO_KCAL

__all__ = ["HydrationProtocol", "alchemical_states", "build_phase", "hydration_free_energy", "run_leg"]

#: Boltzmann constant, kJ/mol/K.
_KB = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


@dataclass(frozen=True)
class HydrationProtocol:
    """Settings of one hydration free energy (units in the names).

    The default is what a 2-core CPU can afford for a small molecule: measured 6-9 min
    per molecule and force field with 30 solvent iterations on a shared 2-core machine,
    so about twice that at the default 60; :meth:`full` is the GPU protocol.

    Attributes
    ----------
    electrostatics, sterics
        Lambda schedules of the solvent leg: charges scaled along ``electrostatics``
        with full sterics, then sterics along ``sterics`` with no charges. The vacuum
        leg uses the electrostatic states only (decoupled sterics in vacuum change
        nothing: intramolecular LJ is kept).
    iterations, vacuum_iterations
        Replica-exchange iterations per leg; each moves every replica
        ``steps_per_iteration`` steps, then attempts swaps.
    """

    temperature_k: float = 298.15
    pressure_bar: float = 1.01325
    padding_nm: float = 1.0
    cutoff_nm: float = 0.9
    timestep_fs: float = 4.0
    hydrogen_mass_amu: float = 3.0
    collision_rate_per_ps: float = 1.0
    steps_per_iteration: int = 250
    iterations: int = 60
    vacuum_iterations: int = 100
    electrostatics: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
    sterics: tuple[float, ...] = (1.0, 0.8, 0.6, 0.45, 0.35, 0.25, 0.15, 0.05, 0.0)
    minimize_iterations: int = 500
    checkpoint_interval: int = 5
    platform: str | None = None

    def __post_init__(self) -> None:
        for name in ("temperature_k", "pressure_bar", "padding_nm", "cutoff_nm", "timestep_fs",
                     "steps_per_iteration", "iterations", "vacuum_iterations", "checkpoint_interval"):
            if not getattr(self, name) > 0:
                raise InputError(f"hydration setting {name} must be positive (got {getattr(self, name)})")
        for name in ("electrostatics", "sterics"):
            values = getattr(self, name)
            if len(values) < 2 or values[0] != 1.0 or values[-1] != 0.0 or any(np.diff(values) >= 0):
                raise InputError(f"hydration setting {name} must decrease strictly from 1.0 to 0.0 (got {values})")

    @classmethod
    def full(cls, **changes: Any) -> HydrationProtocol:
        """The GPU protocol: 20 states (YANK's hydration schedule), 1,000 iterations of 1 ps."""
        settings: dict[str, Any] = dict(
            iterations=1000, vacuum_iterations=1000, padding_nm=1.2,
            sterics=(1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.0),
        )
        settings.update(changes)
        return cls(**settings)

    @property
    def kt_kcal(self) -> float:
        """kT in kcal/mol at the protocol's temperature."""
        return _KB * self.temperature_k * KJ_TO_KCAL


def alchemical_states(protocol: HydrationProtocol, phase: str) -> dict[str, list[float]]:
    """Lambda values of every state of ``phase`` (first: fully coupled, last: decoupled)."""
    elec = list(protocol.electrostatics)
    if phase == "vacuum":
        return {"lambda_electrostatics": elec, "lambda_sterics": [1.0] * len(elec)}
    sterics = list(protocol.sterics[1:])
    return {"lambda_electrostatics": elec + [0.0] * len(sterics),
            "lambda_sterics": [1.0] * len(elec) + sterics}


def build_phase(result: Parametrized, phase: str,
                protocol: HydrationProtocol) -> tuple[app.Topology, openmm.System, np.ndarray, list[int]]:
    """Topology, System, positions (nm) and solute atom indices of one leg.

    ``"solvent"``: the solute in a cubic TIP3P box (``padding_nm`` of water around it),
    PME; ``"vacuum"``: the solute alone, no cutoff. Both with H-bond constraints and
    hydrogen masses repartitioned to ``hydrogen_mass_amu``.
    """
    if phase not in ("solvent", "vacuum"):
        raise InputError(f"unknown phase '{phase}'; choose solvent or vacuum")
    mol = with_conformer(result.mol)
    forcefield = template_forcefield([result])
    modeller = app.Modeller(to_openmm_topology(mol), positions_nm(mol)[0] * unit.nanometer)
    options = dict(constraints=app.HBonds, rigidWater=True, hydrogenMass=protocol.hydrogen_mass_amu * unit.amu)
    if phase == "solvent":
        modeller.addSolvent(forcefield, model="tip3p", padding=protocol.padding_nm * unit.nanometer,
                            boxShape="cube", neutralize=False)
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                         nonbondedCutoff=protocol.cutoff_nm * unit.nanometer, **options)
        system.addForce(openmm.MonteCarloBarostat(protocol.pressure_bar * unit.bar,
                                                  protocol.temperature_k * unit.kelvin))
    else:
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, **options)
    positions = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    return modeller.topology, system, positions, list(range(mol.GetNumAtoms()))


def _sampler(protocol: HydrationProtocol, iterations: int) -> Any:
    mcmc = require("openmmtools.mcmc", "the hydration benchmark")
    multistate = require("openmmtools.multistate", "the hydration benchmark")
    move = mcmc.LangevinDynamicsMove(timestep=protocol.timestep_fs * unit.femtosecond,
                                     collision_rate=protocol.collision_rate_per_ps / unit.picosecond,
                                     n_steps=protocol.steps_per_iteration, reassign_velocities=False)
    return multistate.ReplicaExchangeSampler(mcmc_moves=move, number_of_iterations=iterations,
                                             online_analysis_interval=None)


def _create(result: Parametrized, phase: str, protocol: HydrationProtocol, storage: Path, iterations: int) -> Any:
    alchemy = require("openmmtools.alchemy", "the hydration benchmark")
    states = require("openmmtools.states", "the hydration benchmark")
    multistate = require("openmmtools.multistate", "the hydration benchmark")
    _, system, positions, solute = build_phase(result, phase, protocol)
    factory = alchemy.AbsoluteAlchemicalFactory(alchemical_pme_treatment="exact")
    region = alchemy.AlchemicalRegion(alchemical_atoms=solute, annihilate_electrostatics=True,
                                      annihilate_sterics=False)
    alchemical_system = factory.create_alchemical_system(system, region)
    alchemical_state = alchemy.AlchemicalState.from_system(alchemical_system)
    pressure = protocol.pressure_bar * unit.bar if phase == "solvent" else None
    reference = states.ThermodynamicState(alchemical_system, temperature=protocol.temperature_k * unit.kelvin,
                                          pressure=pressure)
    thermodynamic_states = states.create_thermodynamic_state_protocol(
        reference, protocol=alchemical_states(protocol, phase), composable_states=[alchemical_state])
    box = system.getDefaultPeriodicBoxVectors() if phase == "solvent" else None
    sampler_state = states.SamplerState(positions * unit.nanometer, box_vectors=box)
    reporter = multistate.MultiStateReporter(str(storage), checkpoint_interval=protocol.checkpoint_interval)
    sampler = _sampler(protocol, iterations)
    sampler.create(thermodynamic_states, sampler_state, reporter)
    sampler.minimize(max_iterations=protocol.minimize_iterations)
    return sampler, reporter


def _set_platform(name: str | None) -> None:
    if name is None:
        return
    cache = require("openmmtools.cache", "the hydration benchmark").global_context_cache
    if cache.platform is not None and cache.platform.getName() == name:
        return
    cache.empty()  # a cache holding contexts cannot change platform
    cache.platform = openmm.Platform.getPlatformByName(name)


def _resume(storage: Path, protocol: HydrationProtocol) -> tuple[Any, Any]:
    """The sampler and reporter of an existing storage file, or (None, None) when there is
    none or it was killed before its first checkpoint (its files are then removed)."""
    multistate = require("openmmtools.multistate", "the hydration benchmark")
    if not storage.is_file():
        return None, None
    reporter = None
    try:
        reporter = multistate.MultiStateReporter(str(storage), open_mode="a",
                                                 checkpoint_interval=protocol.checkpoint_interval)
        return multistate.ReplicaExchangeSampler.from_storage(reporter), reporter
    except (OSError, KeyError, IndexError, ValueError, RuntimeError):  # killed before its first checkpoint
        if reporter is not None:
            reporter.close()
        for path in storage.parent.glob(storage.stem + "*.nc"):
            path.unlink()
        return None, None


def _analyse(storage: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MBAR free energies, their errors (kT) and the overlap matrix of a finished leg."""
    multistate = require("openmmtools.multistate", "the hydration benchmark")
    reporter = multistate.MultiStateReporter(str(storage), open_mode="r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analyzer = multistate.MultiStateSamplerAnalyzer(reporter)
            f, df = analyzer.get_free_energy()
            return f, df, np.asarray(analyzer.mbar.compute_overlap()["matrix"])
    finally:
        reporter.close()


def run_leg(result: Parametrized, phase: str, protocol: HydrationProtocol, storage: str | os.PathLike, *,
            progress: Any = None) -> dict[str, Any]:
    """Run (or resume) one leg and estimate its free energy with MBAR.

    Parameters
    ----------
    storage
        netCDF file of the sampler (openmmtools' reporter); an existing one is resumed
        and extended to the protocol's iterations.
    progress
        Optional tqdm-like object; ``update(n)`` is called as iterations finish.

    Returns
    -------
    dict
        ``dG_kcal`` (decoupled - coupled) and ``dG_err_kcal`` (MBAR), ``iterations``,
        ``states``, ``atoms``, ``seconds`` (of this call) and ``min_neighbour_overlap``
        (smallest MBAR overlap between neighbouring states; below ~0.03 the schedule
        needs more states there).
    """
    require("openmmtools.multistate", "the hydration benchmark")  # a clear error before any work
    _set_platform(protocol.platform)
    storage = Path(storage)
    storage.parent.mkdir(parents=True, exist_ok=True)
    target = protocol.iterations if phase == "solvent" else protocol.vacuum_iterations
    start = time.perf_counter()
    sampler, reporter = _resume(storage, protocol)
    if sampler is None:
        sampler, reporter = _create(result, phase, protocol, storage, target)
    done = sampler.iteration
    if progress is not None:
        progress.update(done)
    chunk = max(1, protocol.checkpoint_interval)
    while sampler.iteration < target:
        sampler.extend(min(chunk, target - sampler.iteration))
        if progress is not None:
            progress.update(sampler.iteration - done)
        done = sampler.iteration
    seconds = time.perf_counter() - start
    n_states = sampler.n_states
    n_atoms = sampler.sampler_states[0].n_particles
    reporter.close()  # netCDF/HDF5 must not hold the file open twice
    del sampler
    f, df, overlap = _analyse(storage)
    kt = protocol.kt_kcal
    neighbours = [float(overlap[i, i + 1]) for i in range(len(overlap) - 1)]
    return {"dG_kcal": float(f[0, -1] * kt), "dG_err_kcal": float(df[0, -1] * kt), "iterations": int(target),
            "states": int(n_states), "atoms": int(n_atoms), "seconds": seconds,
            "min_neighbour_overlap": min(neighbours, default=float("nan"))}


def hydration_free_energy(result: Parametrized, protocol: HydrationProtocol, workdir: str | os.PathLike, *,
                          progress: Any = None) -> dict[str, Any]:
    """dG_hyd (kcal/mol) of one parametrized molecule: both legs, their sum and error.

    ``workdir`` holds the legs' netCDF files (resumable). Returns the legs' results
    and ``dG_kcal`` = dG_vacuum - dG_solvent with ``dG_err_kcal`` (errors in quadrature).
    """
    workdir = Path(workdir)
    legs = {phase: run_leg(result, phase, protocol, workdir / f"{phase}.nc", progress=progress)
            for phase in ("vacuum", "solvent")}
    dg = legs["vacuum"]["dG_kcal"] - legs["solvent"]["dG_kcal"]
    err = float(np.hypot(legs["vacuum"]["dG_err_kcal"], legs["solvent"]["dG_err_kcal"]))
    return {"dG_kcal": dg, "dG_err_kcal": err, "legs": legs, "protocol": asdict(protocol)}
