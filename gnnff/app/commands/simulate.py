"""``gnnff simulate``: MD of a ligand in water or vacuum, optionally in a protein
(:mod:`gnnff.app.simulate`)."""

from __future__ import annotations

import argparse

from gnnff.app.commands._common import input_stem, name_option, selected

__all__ = ["add_arguments", "handle"]


def add_arguments(subparsers) -> None:
    """Add ``simulate`` to ``subparsers``."""
    m = subparsers.add_parser(
        "simulate", help="MD of a ligand in water or vacuum, optionally in a protein",
        description="Parametrize the ligand with gnnff (protein: Amber ff14SB, water: TIP3P), minimise, "
                    "equilibrate and run Langevin MD; writes system.xml, start.pdb, trajectory.dcd, log.csv, "
                    "final.pdb and summary.json. Stops with an error if the system blows up.",
    )
    m.add_argument("input", metavar="INPUT",
                   help="ligand file with 3D coordinates (FILE:N or FILE:NAME: its record N or the record titled "
                        "NAME), or a SMILES string (vacuum/water only)")
    name_option(m)
    m.add_argument("-o", "--output", metavar="DIR", help="run folder (default: INPUT-stem-md, INPUT-stem-N-md for a "
                   "record, or a SMILES-derived "
                   "name; an existing run there is refused unless --overwrite)")
    m.add_argument("--protein", metavar="PDB", help="protein with hydrogens, in the ligand's frame (Amber ff14SB)")
    m.add_argument("--solvent", choices=("water", "vacuum"), default="water", help="default: %(default)s")
    m.add_argument("--ns", type=float, default=1.0, help="production length in ns (default: %(default)s)")
    m.add_argument("--equilibration-ps", type=float, default=10.0, help="NVT equilibration (default: %(default)s ps)")
    m.add_argument("--timestep", type=float, default=2.0, metavar="FS",
                   help="default: %(default)s fs (H bonds constrained)")
    m.add_argument("--temperature", type=float, default=300.0, metavar="K", help="default: %(default)s K")
    m.add_argument("--padding", type=float, default=1.0, metavar="NM", help="water box padding (default: %(default)s nm)")
    m.add_argument("--box", type=float, default=None, metavar="NM", help="cubic water box edge instead of --padding")
    m.add_argument("--report-ps", type=float, default=10.0, help="log/frame/check interval (default: %(default)s ps)")
    m.add_argument("--platform", default=None, help="OpenMM platform: CPU, CUDA, OpenCL, Reference (default: fastest)")
    m.add_argument("--model", metavar="NAME_OR_PATH", default=None, help="ligand model (default: the package default)")
    m.add_argument("--minimize-iterations", type=int, default=2000,
                   help="limit of the minimisation (default: %(default)s; 0: until converged)")
    m.add_argument("--seed", type=int, default=1,
                   help="random seed of the initial velocities and the Langevin integrator (default: %(default)s)")
    m.add_argument("--overwrite", action="store_true", help="replace an earlier run in the output folder")
    m.add_argument("-q", "--quiet", action="store_true", help="no stage lines or progress bars")
    m.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the simulation; print its length, size, platform and speed."""
    from gnnff.app.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        solvent=args.solvent, ns=args.ns, equilibration_ps=args.equilibration_ps, timestep_fs=args.timestep,
        temperature_k=args.temperature, padding_nm=args.padding, box_nm=args.box, report_ps=args.report_ps,
        platform=args.platform, seed=args.seed,
        minimize_iterations=args.minimize_iterations)
    output = args.output or f"{input_stem(args.input, args.name)}-md"
    summary = simulate(selected(args.input, args.name), output, config=config, protein=args.protein, model=args.model,
                       progress=not args.quiet, overwrite=args.overwrite)
    print(f"simulated {summary['production_ns']:g} ns of {summary['atoms']} atoms on {summary['platform']} at "
          f"{summary['ns_per_day']:.1f} ns/day; outputs in {output}/")
    return 0
