"""Molecular dynamics of a gnnff-parametrized ligand, alone or in a protein, in vacuum
or in a TIP3P water box (``gnnff simulate``).

The System is built by ``openmm.app.ForceField`` with :class:`GNNFFTemplateGenerator`
for the ligand, Amber ff14SB for a protein and TIP3P (+ Na+/Cl- to neutralise) for
water: PME with a 0.9 nm cutoff in water, no cutoff in vacuum, bonds to hydrogen
constrained, rigid water, Langevin middle integrator, Monte Carlo barostat at 1 bar in
water. Steps: minimise, equilibrate, produce. Every report interval the state is
checked: a NaN energy or coordinate, or a bond stretched beyond 1.5 times its
equilibrium length, stops the run with a :class:`SimulationError` naming the step.

Outputs in the run folder: ``system.xml``, ``start.pdb`` (after minimisation),
``trajectory.dcd``, ``log.csv`` (step, time, energies, temperature, volume, speed),
``final.pdb`` and ``summary.json`` (ns/day of production among other things).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import openmm
from openmm import app, unit

from gnnff.errors import InputError, SimulationError
from gnnff.files import atomic_write_text
from gnnff.mm.export import to_xml

__all__ = ["STRETCH_LIMIT", "SimulationConfig", "build_simulation_system", "simulate"]

#: A bond longer than this times its equilibrium length counts as broken.
STRETCH_LIMIT = 1.5

SOLVENTS = ("water", "vacuum")


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of :func:`simulate` (units in the names).

    Attributes
    ----------
    solvent
        ``"water"`` (TIP3P box, PME, NPT) or ``"vacuum"`` (no cutoff, NVT).
    ns
        Production length in ns.
    equilibration_ps
        NVT equilibration after minimisation, in ps.
    timestep_fs, temperature_k, friction_per_ps
        Langevin middle integrator settings.
    padding_nm
        Water box padding around the solute.
    box_nm
        Edge of a cubic water box instead of the padding (None: use the padding).
    ionic_strength_molar
        NaCl added on top of the neutralising ions.
    report_ps
        Interval of log lines, trajectory frames and stability checks.
    platform
        OpenMM platform name (CPU, CUDA, OpenCL, Reference); None lets OpenMM pick.
    seed
        Seed of velocities and the integrator.
    minimize_iterations
        Limit of the energy minimisation (0: until converged, which for a solvated
        protein can take many minutes).
    """

    solvent: str = "water"
    ns: float = 1.0
    equilibration_ps: float = 10.0
    timestep_fs: float = 2.0
    temperature_k: float = 300.0
    friction_per_ps: float = 1.0
    padding_nm: float = 1.0
    box_nm: float | None = None
    ionic_strength_molar: float = 0.0
    report_ps: float = 10.0
    platform: str | None = None
    seed: int = 1
    minimize_iterations: int = 2000

    def __post_init__(self) -> None:
        if self.solvent not in SOLVENTS:
            raise InputError(f"unknown solvent '{self.solvent}'; choose one of: {', '.join(SOLVENTS)}")
        for name in ("ns", "timestep_fs", "temperature_k", "report_ps"):
            if not getattr(self, name) > 0:
                raise InputError(f"simulation setting {name} must be positive (got {getattr(self, name)})")
        if self.equilibration_ps < 0 or self.padding_nm <= 0 or self.ionic_strength_molar < 0:
            raise InputError("equilibration_ps and ionic_strength_molar must be >= 0, padding_nm > 0")
        if self.minimize_iterations < 0:
            raise InputError(f"minimize_iterations must be >= 0 (0: until converged), got {self.minimize_iterations}")
        if self.box_nm is not None and self.box_nm < 1.8:
            raise InputError(f"box_nm must be at least 1.8 nm (twice the 0.9 nm cutoff), got {self.box_nm}")

    def steps(self, picoseconds: float) -> int:
        """Number of steps covering ``picoseconds`` (at least one when positive)."""
        n = picoseconds * 1000.0 / self.timestep_fs
        return max(1, round(n)) if picoseconds > 0 else 0


def build_simulation_system(molecule: Any, *, config: SimulationConfig, protein: str | os.PathLike | None = None,
                            model: Any = None, say: Callable[[str], None] = lambda message: None,
                            ) -> tuple[app.Topology, Any, openmm.System]:
    """Topology, positions and System of the ligand (in a protein, in water if asked).

    Parameters
    ----------
    molecule
        The ligand (anything :func:`gnnff.load_molecule` reads); its 3D coordinates are
        used (ETKDG when it has none, which only makes sense without a protein).
    config
        Simulation settings (solvent, padding, ions).
    protein
        Optional PDB file of the protein (with hydrogens, Amber ff14SB residue names),
        in the same frame as the ligand coordinates.
    model
        gnnff model for the ligand.
    say
        Called with a line for each stage (reading, solvating, building the System).
    """
    from gnnff.chem.molecule import load_molecule, name_of, positions_nm, with_conformer
    from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology

    mol = load_molecule(molecule)
    if protein is not None and (mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D()):
        raise InputError(f"{name_of(mol)}: a ligand placed in a protein needs 3D coordinates in the protein's frame")
    mol = with_conformer(mol)
    files = ["amber14/tip3p.xml"] if protein is None else ["amber14-all.xml", "amber14/tip3p.xml"]
    forcefield = app.ForceField(*files)
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(mol, model=model).generator)
    if protein is not None:
        say(f"reading the protein {protein}")
        try:
            pdb = app.PDBFile(str(protein))
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise InputError(f"{protein}: cannot read the protein PDB ({err})") from None
        modeller = app.Modeller(pdb.topology, pdb.positions)
        modeller.add(to_openmm_topology(mol), positions_nm(mol)[0] * unit.nanometer)
    else:
        modeller = app.Modeller(to_openmm_topology(mol), positions_nm(mol)[0] * unit.nanometer)
    try:
        if config.solvent == "water":
            say("solvating (TIP3P" + (f", {config.ionic_strength_molar:g} M NaCl" if config.ionic_strength_molar else "")
                + ", neutralising ions)")
            size = ({"boxSize": openmm.Vec3(1.0, 1.0, 1.0) * config.box_nm * unit.nanometer}
                    if config.box_nm else {"padding": config.padding_nm * unit.nanometer})
            modeller.addSolvent(forcefield, model="tip3p", **size,
                                ionicStrength=config.ionic_strength_molar * unit.molar, neutralize=True)
            system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                             nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds,
                                             rigidWater=True)
            system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, config.temperature_k * unit.kelvin))
        else:
            say(f"building the System: {modeller.topology.getNumAtoms()} atoms (vacuum, no cutoff)")
            system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                             constraints=app.HBonds, rigidWater=True)
    except ValueError as err:  # OpenMM's template errors name the residue
        raise SimulationError(f"cannot build the system: {str(err).splitlines()[0]}") from None
    return modeller.topology, modeller.positions, system


def _platform(name: str | None) -> openmm.Platform | None:
    if name is None:
        return None
    known = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    for candidate in known:
        if candidate.lower() == name.lower():
            return openmm.Platform.getPlatformByName(candidate)
    raise InputError(f"OpenMM platform '{name}' is not available here; available: {', '.join(known)}")


class _StabilityCheck:
    """NaN and stretched-bond checks on a state (vectorised over HarmonicBondForce bonds)."""

    def __init__(self, system: openmm.System, topology: app.Topology) -> None:
        pairs, lengths = [], []
        for force in system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                for n in range(force.getNumBonds()):
                    i, j, length, _ = force.getBondParameters(n)
                    pairs.append((i, j))
                    lengths.append(length.value_in_unit(unit.nanometer))
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.lengths = np.asarray(lengths)
        self.atoms = list(topology.atoms())

    def __call__(self, state: openmm.State, step: int, time_ps: float) -> None:
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        where = f"at step {step} ({time_ps:.3f} ps)"
        if not math.isfinite(energy) or not np.isfinite(xyz).all():
            raise SimulationError(f"the simulation blew up {where}: the energy or coordinates are NaN; "
                                  "try a smaller --timestep or check the input geometry")
        if len(self.pairs):
            # Minimum image is unnecessary: bonded atoms are kept together by OpenMM.
            r = np.linalg.norm(xyz[self.pairs[:, 0]] - xyz[self.pairs[:, 1]], axis=1)
            ratio = r / self.lengths
            worst = int(np.argmax(ratio))
            if ratio[worst] > STRETCH_LIMIT:
                a, b = (self.atoms[k] for k in self.pairs[worst])
                raise SimulationError(
                    f"the simulation blew up {where}: bond {a.residue.name}{a.residue.id}:{a.name}-"
                    f"{b.name} is {ratio[worst]:.2f} times its equilibrium length; try a smaller --timestep "
                    "or check the input geometry")


class _MinimizationProgress(openmm.MinimizationReporter):
    """A progress bar over OpenMM's minimiser iterations (energy in the postfix)."""

    def __init__(self, bar) -> None:
        super().__init__()
        self.bar = bar

    def report(self, iteration, x, grad, args):
        self.bar.update(iteration + 1 - self.bar.n)
        if iteration % 10 == 0:
            self.bar.set_postfix_str(f"E = {args['system energy']:.4g} kJ/mol", refresh=False)
        return False  # go on


#: Files a run folder gets.
RUN_FILES = ("system.xml", "start.pdb", "trajectory.dcd", "log.csv", "final.pdb", "summary.json")


def _prepare_folder(out: Path, overwrite: bool) -> None:
    """Create the run folder; an existing run (any of :data:`RUN_FILES`) is an error
    unless ``overwrite``, which removes those files first (nothing stale is left)."""
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise InputError(f"{out}/ already holds a run ({', '.join(existing)}); choose another -o folder or "
                         "pass --overwrite to replace it")
    for name in existing:
        (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_pdb(path: Path, topology: app.Topology, positions) -> None:
    import io

    text = io.StringIO()
    app.PDBFile.writeFile(topology, positions, text, keepIds=True)
    atomic_write_text(path, text.getvalue())


def simulate(molecule: Any, output: str | os.PathLike, *, config: SimulationConfig | None = None,
             protein: str | os.PathLike | None = None, model: Any = None, progress: bool = True,
             overwrite: bool = False) -> dict:
    """Build, minimise, equilibrate and run MD; write the run folder ``output``.

    Parameters
    ----------
    molecule, protein, model
        As for :func:`build_simulation_system`.
    output
        Run folder (created).
    config
        Settings; default :class:`SimulationConfig`.
    progress
        Say each stage and show progress bars for the minimisation and the MD (stderr).
    overwrite
        Replace an earlier run in ``output`` (else an existing run is an error).

    Returns
    -------
    dict
        The summary also written to ``summary.json``: atoms, steps, ns simulated,
        ns/day of production, final energies, file names.

    Raises
    ------
    SimulationError
        The system could not be built or blew up (NaN, broken bond); files written
        so far stay for inspection.
    """
    from tqdm import tqdm

    config = config or SimulationConfig()
    out = Path(output)
    _prepare_folder(out, overwrite)

    def say(message: str) -> None:
        if progress:
            tqdm.write(f"gnnff simulate: {message}", file=sys.stderr)

    say("parametrizing the ligand")
    topology, positions, system = build_simulation_system(molecule, config=config, protein=protein, model=model,
                                                          say=say)
    atomic_write_text(out / "system.xml", to_xml(system))
    simulation = _simulation(topology, system, positions, config)
    check = _StabilityCheck(system, topology)
    _minimise(simulation, config, progress, say)
    say(f"MD: {config.equilibration_ps:g} ps equilibration + {config.ns:g} ns production at "
        f"{config.temperature_k:g} K, {config.timestep_fs:g} fs steps")
    state = simulation.context.getState(getEnergy=True, getPositions=True, enforcePeriodicBox=False)
    check(state, 0, 0.0)
    _write_pdb(out / "start.pdb", topology, state.getPositions())
    simulation.context.setVelocitiesToTemperature(config.temperature_k * unit.kelvin, config.seed)
    state, done, production_wall = _run_md(simulation, check, config, out, progress)
    _write_pdb(out / "final.pdb", topology, state.getPositions())
    ns = config.steps(config.ns * 1000.0) * config.timestep_fs * 1e-6
    summary = {
        "atoms": topology.getNumAtoms(),
        "solvent": config.solvent,
        "protein": str(protein) if protein is not None else None,
        "platform": simulation.context.getPlatform().getName(),
        "steps": done,
        "production_ns": ns,
        "ns_per_day": ns / (production_wall / 86400.0) if production_wall > 0 else None,
        "final_potential_energy_kj_mol": state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
        "files": list(RUN_FILES),
        "config": asdict(config),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _simulation(topology: app.Topology, system: openmm.System, positions: Any,
                config: SimulationConfig) -> app.Simulation:
    """A Langevin simulation of ``system`` on the configured platform, at ``positions``."""
    integrator = openmm.LangevinMiddleIntegrator(config.temperature_k * unit.kelvin,
                                                 config.friction_per_ps / unit.picosecond,
                                                 config.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(config.seed)
    platform = _platform(config.platform)
    simulation = app.Simulation(topology, system, integrator, *([platform] if platform else []))
    simulation.context.setPositions(positions)
    return simulation


def _minimise(simulation: app.Simulation, config: SimulationConfig, progress: bool, say: Any) -> None:
    from gnnff.progress import progress as bar_of

    limit = config.minimize_iterations
    say(f"minimising ({'until converged' if limit == 0 else f'at most {limit} iterations'})")
    with bar_of(total=limit or None, unit="it", desc="minimise", disable=not progress) as bar:
        simulation.minimizeEnergy(tolerance=10.0 * unit.kilojoule_per_mole / unit.nanometer,
                                  maxIterations=limit, reporter=_MinimizationProgress(bar))


def _run_md(simulation: app.Simulation, check: Any, config: SimulationConfig, out: Path,
            progress: bool) -> tuple[Any, int, float]:
    """Equilibration then production in chunks of the report interval, the stability
    check after each; the trajectory and log written as it goes. Returns the last state,
    the steps done and the production's wall time (s)."""
    from gnnff.progress import progress as bar_of

    interval = config.steps(config.report_ps)
    equilibration = config.steps(config.equilibration_ps)
    production = config.steps(config.ns * 1000.0)
    simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), interval, enforcePeriodicBox=False))
    simulation.reporters.append(app.StateDataReporter(
        str(out / "log.csv"), interval, step=True, time=True, potentialEnergy=True, kineticEnergy=True,
        totalEnergy=True, temperature=True, volume=config.solvent == "water", speed=True,
        totalSteps=equilibration + production, separator=","))
    bar = bar_of(total=equilibration + production, unit="step", desc="md", disable=not progress)
    done, production_wall, state = 0, 0.0, None
    try:
        for phase, steps in (("equilibration", equilibration), ("production", production)):
            remaining, start = steps, time.perf_counter()
            while remaining > 0:
                chunk = min(interval, remaining)
                simulation.step(chunk)
                remaining -= chunk
                done += chunk
                bar.update(chunk)
                state = simulation.context.getState(getEnergy=True, getPositions=True)
                check(state, done, done * config.timestep_fs / 1000.0)
            if phase == "production":
                production_wall = time.perf_counter() - start
    finally:
        bar.close()
        for reporter in simulation.reporters:
            close = getattr(getattr(reporter, "_out", None), "close", None)
            if close is not None:
                close()
    if state is None:  # no steps at all: the minimised state
        state = simulation.context.getState(getEnergy=True, getPositions=True)
    return state, done, production_wall
