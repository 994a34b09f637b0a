"""A TYK2 inhibitor in its kinase: protein by Amber ff14SB, ligand by gnnff, TIP3P water.

    python examples/protein-ligand/run.py --quick                       # a quick look, about 2 minutes
    python examples/protein-ligand/run.py --steps 5000 -o tyk2-jmc30     # in water: hours on 2 cores

``--quick`` is vacuum (4,707 atoms), 100 steps and a minimisation capped at 100 iterations:
108 s on 2 CPU cores shared with other jobs. Without it the complex is solvated (TIP3P,
0.15 M NaCl: 53,050 atoms) and minimised to convergence before the MD: on 2 CPU cores shared
with other jobs the build and minimisation took 81 minutes and the MD ran at 0.24 ns/day
(2,000 steps in 24 minutes; the whole run about 2.4 hours). On a GPU use ``--platform CUDA``.
Each stage prints its time.

The same run from the command line:
``gnnff simulate examples/protein-ligand/tyk2_ligand_jmc30.sdf --protein examples/protein-ligand/tyk2_protein.pdb``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import openmm
from openmm import app, unit

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology

HERE = Path(__file__).resolve().parent


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left unset from ``--quick`` or the full run's defaults."""
    quick = {"steps": 100, "solvent": "vacuum", "minimize_iterations": 100}
    full = {"steps": 5000, "solvent": "water", "minimize_iterations": 0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def build(args: argparse.Namespace) -> tuple[app.Modeller, openmm.System]:
    """The complex (protein by Amber ff14SB, ligand by gnnff), in water or vacuum, and its System."""
    protein = app.PDBFile(str(HERE / "tyk2_protein.pdb"))
    ligand = gnnff.load_molecule(HERE / "tyk2_ligand_jmc30.sdf")  # 3D pose in the protein's frame

    generator = GNNFFTemplateGenerator(molecules=ligand, cache=args.cache)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(generator.generator)

    modeller = app.Modeller(protein.topology, protein.positions)
    modeller.add(to_openmm_topology(ligand, residue_name="LIG"), positions_nm(ligand)[0] * unit.nanometer)
    if args.solvent == "vacuum":
        return modeller, forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                                 constraints=app.HBonds)
    modeller.addSolvent(forcefield, model="tip3p", padding=1.0 * unit.nanometer, ionicStrength=0.15 * unit.molar)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                     nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, 300 * unit.kelvin))
    return modeller, system


def parse_args(argv=None) -> argparse.Namespace:
    """The options, with those left unset filled from ``--quick`` or the full run's defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a quick look: vacuum, 100 steps, at most 100 minimisation iterations "
                             "(each still overridable)")
    parser.add_argument("--steps", type=int, default=None, help="MD steps of 2 fs (default: 5000; --quick: 100)")
    parser.add_argument("--solvent", choices=("water", "vacuum"), default=None,
                        help="default: water; --quick: vacuum")
    parser.add_argument("-o", "--output", default="tyk2-jmc30", help="output folder")
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: fastest available)")
    parser.add_argument("--minimize-iterations", type=int, default=None,
                        help="0: until converged (default; --quick: 100)")
    parser.add_argument("--cache", default=None, help="folder caching gnnff ligand templates between runs")
    return _resolve(parser.parse_args(argv))


def main(argv=None) -> int:
    args = parse_args(argv)

    started = time.perf_counter()
    modeller, system = build(args)
    print(f"built the system: {modeller.topology.getNumAtoms()} atoms ({args.solvent}) "
          f"in {time.perf_counter() - started:.0f} s", flush=True)

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
    platform = [openmm.Platform.getPlatformByName(args.platform)] if args.platform else []
    simulation = app.Simulation(modeller.topology, system, integrator, *platform)
    simulation.context.setPositions(modeller.positions)
    started = time.perf_counter()
    simulation.minimizeEnergy(maxIterations=args.minimize_iterations)
    print(f"minimised in {time.perf_counter() - started:.0f} s", flush=True)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    interval = max(1, args.steps // 10)
    simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), interval))
    simulation.reporters.append(app.StateDataReporter(sys.stdout, interval, step=True, potentialEnergy=True,
                                                      temperature=True, speed=True))
    started = time.perf_counter()
    simulation.step(args.steps)
    state = simulation.context.getState(getPositions=True, getEnergy=True)
    with open(out / "complex.pdb", "w") as handle:
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), handle)
    print(f"{modeller.topology.getNumAtoms()} atoms ({args.solvent}), {args.steps} steps "
          f"in {time.perf_counter() - started:.0f} s; final potential energy {state.getPotentialEnergy()}; "
          f"outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
