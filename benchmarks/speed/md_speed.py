"""ns/day of a drug-like ligand in a water box: gnnff parameters vs Sage parameters.

Both Systems are built on the same solvated topology and coordinates by
``openmm.app.ForceField("amber14/tip3p.xml")`` + :class:`GNNFFTemplateGenerator` (the
default gnnff model, or ``model="sage"`` through gnnff's classical path), with the same
settings as ``gnnff simulate``: PME, 0.9 nm cutoff, H-bond constraints, rigid water,
2 fs Langevin middle integrator, Monte Carlo barostat. Timed segments alternate between
the two Systems; the median of the repeats is reported. Both use the same standard
forces, so the ratio should be ~1.

Run: python benchmarks/speed/md_speed.py [--box 3.0] [--steps 2000] [--repeats 5] [--platform CPU]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import openmm
from openmm import app, unit

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import ROOT  # noqa: E402

LIGAND = ROOT / "examples" / "protein-ligand" / "tyk2_ligand_jmc30.sdf"


def build(modeller: app.Modeller, ligand, model: str | None, **options) -> openmm.System:
    forcefield = app.ForceField("amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(molecules=ligand, model=model, **options).generator)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                     constraints=app.HBonds, rigidWater=True)
    system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, 300 * unit.kelvin))
    return system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ligand", default=str(LIGAND))
    parser.add_argument("--box", type=float, default=3.0, help="cubic box edge in nm (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=2000, help="steps per timed segment (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--platform", default="CPU")
    args = parser.parse_args()

    ligand = gnnff.load_molecule(args.ligand)
    modeller = app.Modeller(to_openmm_topology(ligand), positions_nm(ligand)[0] * unit.nanometer)
    solvate_with = app.ForceField("amber14/tip3p.xml")  # needs the ligand's template for its radii
    solvate_with.registerTemplateGenerator(GNNFFTemplateGenerator(molecules=ligand).generator)
    modeller.addSolvent(solvate_with, model="tip3p",
                        boxSize=openmm.Vec3(1, 1, 1) * args.box * unit.nanometer, neutralize=True)
    systems = {"gnnff": build(modeller, ligand, None), "sage": build(modeller, ligand, "sage", charges="am1bcc-fast")}
    platform = openmm.Platform.getPlatformByName(args.platform)
    simulations = {}
    for name, system in systems.items():
        integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
        integrator.setRandomNumberSeed(1)
        simulation = app.Simulation(modeller.topology, system, integrator, platform)
        simulation.context.setPositions(modeller.positions)
        simulation.minimizeEnergy(maxIterations=200)
        simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        simulation.step(500)  # warm-up and a little equilibration, untimed
        simulations[name] = simulation
    torsions = {name: sum(f.getNumTorsions() for f in s.getForces() if isinstance(f, openmm.PeriodicTorsionForce))
                for name, s in systems.items()}
    rates: dict[str, list[float]] = {name: [] for name in simulations}
    for _ in range(args.repeats):
        for name, simulation in simulations.items():
            simulation.context.getState(getEnergy=True)  # flush queued work before timing
            start = time.perf_counter()
            simulation.step(args.steps)
            simulation.context.getState(getEnergy=True)
            seconds = time.perf_counter() - start
            rates[name].append(args.steps * 2e-6 / (seconds / 86400.0))
    threads = platform.getPropertyValue(simulations["gnnff"].context, "Threads") if args.platform == "CPU" else "-"
    print(f"ligand {ligand.GetProp('_Name')} ({ligand.GetNumAtoms()} atoms) in a {args.box:g} nm TIP3P box: "
          f"{modeller.topology.getNumAtoms()} atoms; platform {args.platform} (threads {threads}); "
          f"{args.repeats} alternating segments of {args.steps} steps (2 fs)")
    print(f"{'parameters':<12}{'torsion terms':>15}{'median ns/day':>16}{'min':>9}{'max':>9}")
    for name, values in rates.items():
        print(f"{name:<12}{torsions[name]:>15}{statistics.median(values):>16.2f}{min(values):>9.2f}{max(values):>9.2f}")
    ratio = statistics.median(rates["gnnff"]) / statistics.median(rates["sage"])
    print(f"ratio gnnff / sage (median ns/day): {ratio:.3f}")


if __name__ == "__main__":
    main()
