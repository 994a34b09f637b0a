"""Aspirin in a TIP3P water box with gnnff parameters, written the way an OpenMM user would.

    python examples/ligand-in-water/run.py --steps 5000 -o aspirin-water

The same run from the command line: ``gnnff simulate examples/aspirin.sdf --solvent water``.
gnnff parametrizes the ligand through its template generator; TIP3P and the ions come
from OpenMM's ``amber14/tip3p.xml``. PME, 0.9 nm cutoff, H-bond constraints, rigid water,
2 fs Langevin dynamics at 300 K, Monte Carlo barostat at 1 bar.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import openmm
from openmm import app, unit

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ligand", default=str(HERE.parent / "aspirin.sdf"))
    parser.add_argument("--steps", type=int, default=5000, help="MD steps of 2 fs (default: %(default)s)")
    parser.add_argument("-o", "--output", default="aspirin-water", help="output folder")
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: fastest available)")
    parser.add_argument("--minimize-iterations", type=int, default=0, help="0: until converged (default)")
    args = parser.parse_args(argv)

    ligand = gnnff.load_molecule(args.ligand)
    forcefield = app.ForceField("amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(molecules=ligand).generator)

    modeller = app.Modeller(to_openmm_topology(ligand), positions_nm(ligand)[0] * unit.nanometer)
    modeller.addSolvent(forcefield, model="tip3p", padding=1.0 * unit.nanometer, neutralize=True)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                     nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds, rigidWater=True)
    system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, 300 * unit.kelvin))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
    platform = [openmm.Platform.getPlatformByName(args.platform)] if args.platform else []
    simulation = app.Simulation(modeller.topology, system, integrator, *platform)
    simulation.context.setPositions(modeller.positions)
    simulation.minimizeEnergy(maxIterations=args.minimize_iterations)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    interval = max(1, args.steps // 10)
    simulation.reporters.append(app.DCDReporter(str(out / "trajectory.dcd"), interval))
    simulation.reporters.append(app.StateDataReporter(str(out / "log.csv"), interval, step=True,
                                                      potentialEnergy=True, temperature=True, density=True,
                                                      speed=True, separator=","))
    simulation.reporters.append(app.StateDataReporter(sys.stdout, interval, step=True, potentialEnergy=True,
                                                      temperature=True, speed=True))
    simulation.step(args.steps)
    state = simulation.context.getState(getPositions=True, getEnergy=True)
    with open(out / "final.pdb", "w") as handle:
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), handle)
    print(f"{modeller.topology.getNumAtoms()} atoms, {args.steps} steps; "
          f"final potential energy {state.getPotentialEnergy()}; outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
