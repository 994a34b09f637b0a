"""A TYK2 inhibitor in its kinase: protein by Amber ff14SB, ligand by gnnff, TIP3P water.

    python examples/protein-ligand/run.py --steps 5000 -o tyk2-jmc30
    python examples/protein-ligand/run.py --solvent vacuum --steps 100   # quick look

The same run from the command line:
``gnnff simulate examples/protein-ligand/tyk2_ligand_jmc30.sdf --protein examples/protein-ligand/tyk2_protein.pdb``.
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
    parser.add_argument("--steps", type=int, default=5000, help="MD steps of 2 fs (default: %(default)s)")
    parser.add_argument("--solvent", choices=("water", "vacuum"), default="water")
    parser.add_argument("-o", "--output", default="tyk2-jmc30", help="output folder")
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: fastest available)")
    parser.add_argument("--minimize-iterations", type=int, default=0, help="0: until converged (default)")
    parser.add_argument("--cache", default=None, help="folder caching gnnff ligand templates between runs")
    args = parser.parse_args(argv)

    protein = app.PDBFile(str(HERE / "tyk2_protein.pdb"))
    ligand = gnnff.load_molecule(HERE / "tyk2_ligand_jmc30.sdf")  # 3D pose in the protein's frame

    generator = GNNFFTemplateGenerator(molecules=ligand, cache=args.cache)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(generator.generator)

    modeller = app.Modeller(protein.topology, protein.positions)
    modeller.add(to_openmm_topology(ligand, residue_name="LIG"), positions_nm(ligand)[0] * unit.nanometer)
    if args.solvent == "water":
        modeller.addSolvent(forcefield, model="tip3p", padding=1.0 * unit.nanometer, ionicStrength=0.15 * unit.molar)
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                         nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
        system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, 300 * unit.kelvin))
    else:
        system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)

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
    simulation.reporters.append(app.StateDataReporter(sys.stdout, interval, step=True, potentialEnergy=True,
                                                      temperature=True, speed=True))
    simulation.step(args.steps)
    state = simulation.context.getState(getPositions=True, getEnergy=True)
    with open(out / "complex.pdb", "w") as handle:
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), handle)
    print(f"{modeller.topology.getNumAtoms()} atoms ({args.solvent}), {args.steps} steps; "
          f"final potential energy {state.getPotentialEnergy()}; outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
