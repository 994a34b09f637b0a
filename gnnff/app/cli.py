"""The ``gnnff`` command line. It only calls the public API.

Exit codes: 0 every molecule written; 1 some molecules failed (the others were
written); 2 nothing could be done (bad file, bad option, unknown model).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from gnnff._version import __version__
from gnnff.app import workers as machine
from gnnff.errors import GnnffError, InputError

__all__ = ["main"]


#: Output formats of `parametrize` (gnnff.app.formats.FORMATS, listed here so that building
#: the parser imports nothing heavy).
_FORMATS = ("xml", "ffxml", "amber", "gromacs")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnnff", description="Molecular-mechanics force fields for small molecules, as OpenMM Systems."
    )
    parser.add_argument("--version", action="version", version=f"gnnff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _parametrize_parser(commands)
    commands.add_parser("models", help="list the known models")
    _train_parser(commands)
    _evaluate_parser(commands)
    _data_parser(commands)
    _scan_parser(commands)
    _finetune_parser(commands)
    _simulate_parser(commands)
    return parser


def _parametrize_parser(commands) -> None:
    p = commands.add_parser(
        "parametrize", help="write an OpenMM System XML for each molecule of the input",
        description="Parametrize molecules and write one OpenMM System XML per molecule. Several "
                    "molecules go to a folder with report.csv and report.json (one row per record: ok, "
                    "failed or skipped). Each output gets a provenance record beside it (.NAME.gnnff.json: "
                    "molecule, model, format, gnnff version); a rerun skips outputs made from the same "
                    "ones (resume) and refuses to replace others unless --overwrite. "
                    "A salt or other multi-component record is one System, each component keeping its "
                    "own net charge.",
    )
    p.add_argument("input", metavar="INPUT",
                   help="SDF (.sdf, .sdf.gz, .mol), MOL2 or SMILES (.smi) file, or a SMILES string")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output file (one molecule; .xml, .ffxml, .prmtop or .top, none: --format's), "
                        "folder or file pattern (several: numbered files); default: INPUT's stem (a file "
                        "for one molecule, a folder for several), or for a SMILES string a name made from it")
    p.add_argument("--model", metavar="NAME_OR_PATH", default=None,
                   help="parameter source (default: the package default); `gnnff models` lists them")
    p.add_argument("--charges", metavar="METHOD", default=None,
                   help="charge method of the classical model (--model sage): am1bcc (default), am1bcc-fast, mmff94")
    p.add_argument("--format", choices=_FORMATS, default=None,
                   help="xml: OpenMM System (default); ffxml: ForceField residue template; amber: prmtop + "
                        "inpcrd; gromacs: top + gro (default: from the -o suffix .ffxml/.prmtop/.top, else xml)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo records whose output exists (default: skip those made from the same molecule, "
                        "model and format, so a rerun resumes, and fail those made from other work)")
    p.add_argument("--workers", default=None, metavar="N|auto",
                   help="worker processes; auto (default): one per idle core for 500 molecules or more "
                        "(then 1.6x faster on 2 idle cores), else this process alone")
    p.add_argument("--dask", default=None, metavar="ADDRESS|local[:N]",
                   help="run on a dask.distributed cluster instead of --workers: a scheduler's address "
                        "(tcp://host:8786), or local[:N] for N single-threaded worker processes here "
                        "(default one per core). Workers load the model once and write the outputs "
                        "themselves, so they must see the input's and outputs' folders (a shared "
                        "filesystem); needs pip install 'gnnff[dask]'")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def _train_parser(commands) -> None:
    t = commands.add_parser("train", help="train a model from a YAML config",
                            description="Train a gnnff model; outputs go to the config's 'output' folder.")
    t.add_argument("config", metavar="CONFIG.yaml")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt if it exists")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training in N processes on this machine (torch.distributed, gloo): "
                        "each step's batch is shared out, optim.threads split between them (default: 1; "
                        "under torchrun its processes are used instead)")


def _evaluate_parser(commands) -> None:
    e = commands.add_parser("evaluate", help="RMSE tables and parity plots against QM data",
                            description="Energy/force RMSE per data set (bootstrap 95%% intervals over "
                                        "molecules) for a model beside the Sage baseline.")
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="model file (.pt) or model name")
    e.add_argument("data", metavar="DATA", nargs="+", help="SPICE-layout .hdf5 or QCArchive .sdf[.gz] files")
    e.add_argument("-o", "--output", default="evaluation", help="folder for results and plots (default: %(default)s)")
    e.add_argument("--splits", metavar="SPLITS.json", help="restrict to one part of a training run's splits.json")
    e.add_argument("--part", default="test", help="part of --splits to use (default: %(default)s)")
    e.add_argument("--baseline-charges", default="am1bcc-fast",
                   help="charges of the Sage baseline (default: %(default)s); 'none' skips the baseline")
    e.add_argument("--limit", type=int, default=None, help="first N molecules of each file")


def _data_parser(commands) -> None:
    g = commands.add_parser("data", help="generate reference data (conformers + QM/ML labels) as HDF5",
                            description="Conformers (input 3D or ETKDG, plus MD frames at elevated temperature) "
                                        "labelled by a reference method, appended to a SPICE-layout HDF5 file; "
                                        "molecules already in the file are skipped (resumable).")
    g.add_argument("input", metavar="INPUT", help="molecule file or SMILES, as for parametrize")
    g.add_argument("-o", "--output", required=True, help="HDF5 file to create or extend")
    g.add_argument("--labeler", default="gfn2-xtb", help="gfn2-xtb or ani-2x (default: %(default)s)")
    g.add_argument("--etkdg", type=int, default=4, help="ETKDG conformers when the input has no 3D (default: 4)")
    g.add_argument("--md-frames", type=int, default=8, help="MD frames per starting conformer (default: 8)")
    g.add_argument("--temperature", type=float, default=500.0, help="MD temperature in K (default: 500)")
    g.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    g.add_argument("--seed", type=int, default=0)


def _scan_parser(commands) -> None:
    s = commands.add_parser(
        "scan", help="drive one torsion with a reference method and compare the model's profile",
        description="Constrained-optimisation torsion drive (geomeTRIC): the dihedral I-J-K-L is held at each "
                    "grid value (every --step degrees, both directions round from the input conformer, the lower "
                    "energy kept) with the reference method, everything else optimised; the model's System is "
                    "then minimised under the same constraint at each point. Writes profile.csv, profile.png, "
                    "scan.sdf and summary.json (RMSE of the model's profile) to the output folder.")
    s.add_argument("input", metavar="INPUT", help="molecule file (its first conformer starts the drive) or SMILES")
    s.add_argument("--torsion", nargs="+", required=True, metavar="I J K L | auto",
                   help="the dihedral's atoms, 0-based indices in the input's order (hydrogens included); "
                        "auto: every symmetry-unique rotatable bond between heavy-atom groups, one subfolder each")
    s.add_argument("--labeler", default="ani-2x", help="reference method: ani-2x (default), gfn2-xtb, b3lyp-d3bj")
    s.add_argument("--model", default=None, metavar="NAME_OR_PATH", help="the model compared (default: the default)")
    s.add_argument("--step", type=float, default=15.0, metavar="DEG", help="grid spacing (default: %(default)s)")
    s.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="output folder (default: INPUT-stem-scan-I-J-K-L, or INPUT-stem-scans with auto)")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier scan in the output folder")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _scan(args: argparse.Namespace) -> int:
    from gnnff.train.scan import rotatable_torsions, scan

    if args.torsion == ["auto"]:
        import gnnff

        torsions = rotatable_torsions(gnnff.load_molecule(args.input))
        if not torsions:
            raise InputError(f"{args.input}: no rotatable bond between heavy-atom groups to scan; "
                             "give --torsion I J K L")
        root = Path(args.output or f"{_input_stem(args.input)}-scans")
        outputs = [root / "-".join(map(str, t)) for t in torsions]
    else:
        try:
            torsions = [tuple(int(a) for a in args.torsion)]
        except ValueError:
            torsions = []
        if len(args.torsion) != 4 or not torsions:
            raise InputError(f"--torsion takes four atom indices or 'auto', not {' '.join(args.torsion)}")
        outputs = [Path(args.output or f"{_input_stem(args.input)}-scan-{'-'.join(args.torsion)}")]
    for torsion, output in zip(torsions, outputs):
        summary = scan(args.input, torsion, output, labeler=args.labeler, model=args.model, step=args.step,
                       overwrite=args.overwrite, progress=not args.quiet)
        print(f"scan of torsion {summary['torsion']} ({summary['molecule']}): {summary['points']} points, "
              f"{args.labeler} vs {summary['model']}: RMSE {summary['rmse_kcal_mol']:.2f} kcal/mol; "
              f"{summary['seconds']:.0f} s ({summary['labelling_seconds']:.0f} s labelling); {output}/")
    return 0


def _finetune_parser(commands) -> None:
    f = commands.add_parser(
        "finetune", help="tune a model's valence terms on torsion drives of your ligands (bespoke)",
        description="For each molecule: constrained torsion drives of its rotatable bonds (central and "
                    "ring-substituent torsions, one per symmetry-unique bond) with the labeler, plus "
                    "off-equilibrium samples; then the base model's valence heads are trained on them with a "
                    "pull toward the base model's parameters (trunk, charges and Lennard-Jones frozen). Writes "
                    "the checkpoint (use it as --model) and WORK/labels (resumable) and WORK/report (a PNG per "
                    "scan, scans.csv, summary.json: base vs tuned on held-out grid points). A molecule that "
                    "cannot be labelled is reported and left out.")
    f.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="molecule files (3D conformers start the drives) or SMILES")
    f.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="the fine-tuned checkpoint")
    f.add_argument("--labeler", default="ani-2x", help="reference method: ani-2x (default), gfn2-xtb, b3lyp-d3bj")
    f.add_argument("--base", default=None, metavar="NAME_OR_PATH", help="model to tune (default: the default model)")
    f.add_argument("--scans", default="auto", metavar="auto|N",
                   help="torsions per molecule: auto (every one found, default) or at most N")
    f.add_argument("--step", type=float, default=15.0, metavar="DEG", help="drive grid spacing (default: %(default)s)")
    f.add_argument("--samples", type=int, default=2, help="off-equilibrium samples per fitted point (default: 2)")
    f.add_argument("--conformers", type=int, default=0, metavar="N",
                   help="also fit N conformers per molecule embedded from its graph and minimised with the "
                        "labeler, as relaxed relative energies and at their minima (default: 0, none: on the "
                        "development ligands they did not help the gas phase)")
    f.add_argument("--hold-out", type=int, default=2, metavar="K",
                   help="hold out every K-th grid point of each scan for the report (default: 2; 0: none)")
    f.add_argument("--hold-out-scans", action="store_true",
                   help="also keep each molecule's last scan (of two or more) out of the fit, reported apart")
    f.add_argument("--steps", type=int, default=300, help="optimiser steps (default: %(default)s)")
    f.add_argument("--pull", type=float, default=0.01,
                   help="weight of the pull to the base model on the driven bonds' torsions (default: %(default)s)")
    f.add_argument("--anchor", type=float, default=1.0,
                   help="weight of the pull on every other valence parameter of the series (default: %(default)s)")
    f.add_argument("--profile", type=float, default=1.0,
                   help="weight of the relaxed-profile loss: MM-minimised scan points against the labeler's "
                        "(default: %(default)s)")
    f.add_argument("--energies", type=float, default=None,
                   help="weight of the energies at the labeler's geometries (default: 1 with --tune heads, "
                        "0.1 with --tune torsions)")
    f.add_argument("--forces", type=float, default=0.02,
                   help="weight of the forces at the labeler's geometries (default: %(default)s)")
    f.add_argument("--relax-every", type=int, default=25, metavar="N",
                   help="steps between re-minimisations of the profile points (default: %(default)s)")
    f.add_argument("--terms", default=None, metavar="T1,T2",
                   help="with --tune heads: the valence heads trained, e.g. propers,impropers (default: all)")
    f.add_argument("--tune", choices=("torsions", "heads"), default="torsions",
                   help="what the fit changes: residuals on the torsions of the driven bonds' chemical environments "
                        "only (every other parameter stays the base model's exactly), or the valence heads (every "
                        "molecule's valence terms move a little) (default: %(default)s)")
    f.add_argument("--learning-rate", type=float, default=1e-3, help="Adam step size (default: %(default)s)")
    f.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="step size decayed to zero along a cosine, or held (default: %(default)s)")
    f.add_argument("--work", default=None, metavar="DIR", help="labels and report (default: MODEL.finetune)")
    f.add_argument("--workers", type=int, default=1,
                   help="molecules labelled at once, one single-threaded process each (default: 1)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing MODEL.pt (labels are reused)")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _finetune(args: argparse.Namespace) -> int:
    from gnnff.train.finetune import FinetuneSettings, finetune

    if args.scans == "auto":
        scans = None
    else:
        try:
            scans = int(args.scans)
        except ValueError:
            raise InputError(f"--scans takes 'auto' or a number, not {args.scans}") from None
    settings = FinetuneSettings(labeler=args.labeler, base=args.base, scans=scans, step=args.step,
                                samples=args.samples, hold_out=args.hold_out,
                                hold_out_scans=args.hold_out_scans, steps=args.steps, pull=args.pull,
                                anchor=args.anchor,
                                profile=args.profile, energies=args.energies, forces=args.forces,
                                relax_every=args.relax_every, learning_rate=args.learning_rate,
                                schedule=args.schedule,
                                terms=tuple(args.terms.split(",")) if args.terms else None,
                                conformers=args.conformers, tune=args.tune)
    summary = finetune(args.inputs, args.output, settings=settings, work=args.work, overwrite=args.overwrite,
                       workers=args.workers, progress=not args.quiet)
    for failure in summary["failed"]:
        print(f"gnnff: skipped: {' '.join(failure['error'].split())}", file=sys.stderr)
    held, seconds = summary["held_out_rmse"], summary["seconds"]
    whole = summary["held_out_scan_rmse"]
    scans = (f" (points), {whole['base']:.2f} -> {whole['tuned']:.2f} on {summary['held_out_scans']} held-out scans"
             if summary["held_out_scans"] else "")
    c = summary["conformer_rmse"]
    if math.isfinite(c["base"]):
        scans += f"; relaxed conformer energies {c['base']:.2f} -> {c['tuned']:.2f} (fitted)"
    print(f"fine-tuned {summary['base']} on {summary['scans']} scans of {summary['molecules']} molecules "
          f"({args.labeler}): held-out profile RMSE {held['base']:.2f} -> {held['tuned']:.2f} kcal/mol{scans}; "
          f"{seconds['total']:.0f} s ({seconds['labelling']:.0f} s labelling, {seconds['fitting']:.0f} s fitting); "
          f"{args.output}, report in {summary['report']}/")
    return 1 if summary["failed"] else 0


def _simulate_parser(commands) -> None:
    m = commands.add_parser(
        "simulate", help="MD of a ligand in water or vacuum, optionally in a protein",
        description="Parametrize the ligand with gnnff (protein: Amber ff14SB, water: TIP3P), minimise, "
                    "equilibrate and run Langevin MD; writes system.xml, start.pdb, trajectory.dcd, log.csv, "
                    "final.pdb and summary.json. Stops with an error if the system blows up.",
    )
    m.add_argument("input", metavar="INPUT", help="ligand file with 3D coordinates (or a SMILES string, vacuum/water only)")
    m.add_argument("-o", "--output", metavar="DIR", help="run folder (default: INPUT-stem-md, or a SMILES-derived "
                   "name; an existing run there is refused unless --overwrite)")
    m.add_argument("--protein", metavar="PDB", help="protein with hydrogens, in the ligand's frame (Amber ff14SB)")
    m.add_argument("--solvent", choices=("water", "vacuum"), default="water", help="default: %(default)s")
    m.add_argument("--ns", type=float, default=1.0, help="production length in ns (default: %(default)s)")
    m.add_argument("--equilibration-ps", type=float, default=10.0, help="NVT equilibration (default: %(default)s ps)")
    m.add_argument("--timestep", type=float, default=2.0, metavar="FS", help="default: %(default)s fs (H bonds constrained)")
    m.add_argument("--temperature", type=float, default=300.0, metavar="K", help="default: %(default)s K")
    m.add_argument("--padding", type=float, default=1.0, metavar="NM", help="water box padding (default: %(default)s nm)")
    m.add_argument("--box", type=float, default=None, metavar="NM", help="cubic water box edge instead of --padding")
    m.add_argument("--report-ps", type=float, default=10.0, help="log/frame/check interval (default: %(default)s ps)")
    m.add_argument("--platform", default=None, help="OpenMM platform: CPU, CUDA, OpenCL, Reference (default: fastest)")
    m.add_argument("--model", metavar="NAME_OR_PATH", default=None, help="ligand model (default: the package default)")
    m.add_argument("--minimize-iterations", type=int, default=2000,
                   help="limit of the minimisation (default: %(default)s; 0: until converged)")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--overwrite", action="store_true", help="replace an earlier run in the output folder")
    m.add_argument("-q", "--quiet", action="store_true", help="no stage lines or progress bars")


def _input_stem(source: str) -> str:
    """A file's stem, or a name made from a SMILES string (for default output folders)."""
    from gnnff.chem.molecule import looks_like_path

    return Path(source).name.split(".")[0] if looks_like_path(source) else _slug(source)


def _simulate(args: argparse.Namespace) -> int:
    from gnnff.app.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        solvent=args.solvent, ns=args.ns, equilibration_ps=args.equilibration_ps, timestep_fs=args.timestep,
        temperature_k=args.temperature, padding_nm=args.padding, box_nm=args.box, report_ps=args.report_ps,
        platform=args.platform, seed=args.seed,
        minimize_iterations=args.minimize_iterations)
    output = args.output or f"{_input_stem(args.input)}-md"
    summary = simulate(args.input, output, config=config, protein=args.protein, model=args.model,
                       progress=not args.quiet, overwrite=args.overwrite)
    print(f"simulated {summary['production_ns']:g} ns of {summary['atoms']} atoms on {summary['platform']} at "
          f"{summary['ns_per_day']:.1f} ns/day; outputs in {output}/")
    return 0


def _data(args: argparse.Namespace) -> int:
    from gnnff.train.generate import SamplingConfig, generate

    _, _, records = _records(args.input)
    sampling = SamplingConfig(etkdg=args.etkdg, md_frames=args.md_frames, temperature=args.temperature,
                              seed=args.seed)
    report = generate(list(records), args.output, labeler=args.labeler, sampling=sampling, workers=args.workers)
    for message in report["failed"]:
        print(f"gnnff: error: {message}", file=sys.stderr)
    print(f"wrote {len(report['written'])} molecule(s) to {args.output}; {len(report['skipped'])} already there; "
          f"{len(report['failed'])} failed")
    return 0 if not report["failed"] else 1


def _train(args: argparse.Namespace) -> int:
    from gnnff.train.config import load_config
    from gnnff.train.parallel import from_environment
    from gnnff.train.training import train, train_parallel, trains_on_gpu

    config = load_config(args.config)
    world = from_environment(gpu=trains_on_gpu(config))
    if world is not None:  # started by torchrun: this process is one rank
        result = train(config, resume=args.resume, world=world)
        if not world.main:
            return 0
    elif args.nproc < 1:
        raise InputError(f"--nproc {args.nproc}: give a number of processes, 1 or more")
    elif args.nproc > 1:
        result = train_parallel(config, args.nproc, resume=args.resume)
    else:
        result = train(config, resume=args.resume)
    print(f"trained {result['epochs']} epoch(s); best model: {result['model']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import gnnff
    from gnnff.train.evaluate import evaluate, format_table

    sources = {"gnnff": gnnff.get_model(args.checkpoint)}
    if args.baseline_charges != "none":
        sources["sage"] = gnnff.get_model("sage", charges=args.baseline_charges)
    keys = None
    if args.splits:
        try:
            keys = set(json.loads(Path(args.splits).read_text())[args.part])
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{args.splits}: cannot read part '{args.part}' ({err})") from None
    rows = evaluate(sources, args.data, output=args.output, keys=keys, limit=args.limit)
    print(format_table(rows))
    print(f"results and parity plots in {args.output}/")
    return 0


def _records(source: str) -> tuple[str, int, Iterator]:
    """The input's stem, its number of records, and the records (read lazily)."""
    from gnnff.chem.molecule import Record, count_records, load_molecule, looks_like_path, read_records

    if not source.strip():
        raise InputError("empty input: give a molecule file or a SMILES string")
    if looks_like_path(source):
        path = Path(source)
        return path.stem.removesuffix(".sdf"), count_records(path), read_records(path)
    try:
        record = Record(1, f"SMILES '{source}'", mol=load_molecule(source, name=source))
    except GnnffError as err:
        record = Record(1, f"SMILES '{source}'", error=err)
    return _slug(source), 1, iter([record])


def _slug(smiles: str, limit: int = 48) -> str:
    """A file name stem for a SMILES string: the SMILES itself when it holds only letters,
    digits, ``=``, ``+`` and ``-`` (``CCO``); else its runs of those characters joined by
    ``_`` and 8 hex digits of its SHA-256, so that different SMILES get different names
    (``[NH3+]CC(=O)[O-]`` -> ``NH3+_CC_=O_O-_..``)."""
    smiles = smiles.strip()
    safe = re.sub(r"[^A-Za-z0-9=+-]+", "_", smiles).strip("_-=+")
    if safe == smiles and len(smiles) <= limit:
        return smiles
    digest = hashlib.sha256(smiles.encode()).hexdigest()[:8]
    return f"{safe[:limit].rstrip('_')}_{digest}" if safe else digest


def _output_paths(stem: str, output: str | None, count: int,
                  fmt: str | None = None) -> tuple[list[Path], Path | None, str]:
    """Output path of record 1, 2, ..., the report's path stem (None for one output file)
    and the output format (``fmt``, else the suffix's, else xml).

    One record goes to ``output`` (default ``STEM`` + the format's suffix); an output
    without a suffix gets the format's (``-o lig --format amber``: ``lig.prmtop`` +
    ``lig.inpcrd``) and an unknown suffix is an InputError
    (:func:`gnnff.app.formats.resolve_output`). Several records, or an ``output`` that is
    an existing folder or ends with ``/``, go to a folder (``FOLDER/0001.xml`` ...,
    report ``FOLDER/report.csv``; default folder ``STEM``), or to numbered files from
    a file name (``lig.xml`` -> ``lig-0001.xml`` ..., report ``lig-report.csv``).
    """
    from gnnff.app.formats import FORMATS, resolve_output

    width = max(4, len(str(count)))
    folder = output is not None and (output.endswith(("/", os.sep)) or Path(output).is_dir())
    if output is None:
        if count == 1:
            fmt = fmt or "xml"
            return [Path(f"{stem}{FORMATS[fmt][0]}")], None, fmt
        folder, output = True, stem
    elif count > 1 and not Path(output).suffix:
        folder = True
    if folder:
        fmt = fmt or "xml"
        target = Path(output)
        return [target / f"{i:0{width}d}{FORMATS[fmt][0]}" for i in range(1, count + 1)], target / "report", fmt
    main, fmt = resolve_output(output, fmt)
    if count == 1:
        return [main], None, fmt
    paths = [main.with_name(f"{main.stem}-{i:0{width}d}{main.suffix}") for i in range(1, count + 1)]
    return paths, main.with_name(f"{main.stem}-report"), fmt


def _prepare_output(first: Path, report: Path | None) -> None:
    """Create the output folder and check it is writable; raise InputError (exit 2) if not."""
    folder = first.parent
    where = first if report is None else str(folder) + "/"
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InputError(f"cannot write {where}: {blocker} is a file, not a folder; choose another output (-o)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".gnnff-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise InputError(f"cannot write {where} ({err.strerror or type(err).__name__}); "
                         "choose a writable output (-o)") from None


def _write(result, path: Path, fmt: str = "xml") -> list[Path]:
    """Write one parametrized molecule to ``path`` atomically (the one place outputs are
    written); return the files written."""
    from gnnff.app.formats import write_parametrized

    return write_parametrized(result, path, fmt)


def _parametrize(args: argparse.Namespace) -> int:
    options = {"charges": args.charges} if args.charges else {}
    if options and args.model is None:
        raise InputError("--charges applies to the classical model: add --model sage")
    requested = machine.requested_workers(args.workers or "auto")
    local = machine.dask_option(args.dask, args.workers)  # before any file is read: a bad --dask is exit 2
    stem, count, records = _records(args.input)  # a bad input file fails before the model loads
    paths, report, fmt = _output_paths(stem, args.output, count, args.format)  # so does a bad -o
    from tqdm import tqdm

    import gnnff
    from gnnff.app.batch import Row, Work, plan, run, run_dask  # torch and the network: after the cheap checks
    from gnnff.openmm import model_fingerprint

    model = gnnff.get_model(args.model, **options)
    work = Work(format=fmt, model=model.name, model_fingerprint=model_fingerprint(model))
    _prepare_output(paths[0], report)
    say = (lambda line: None) if args.quiet else (lambda line: tqdm.write(line, file=sys.stdout))
    rows: list[Row] = []
    start = time.perf_counter()
    bar = tqdm(total=count, unit="mol", desc="parametrize", file=sys.stderr, disable=None if count > 1 else True)
    record = _recorder(rows, bar, say, model.name)

    def jobs():
        for item in plan(records, paths, overwrite=args.overwrite, work=work):
            if isinstance(item, Row):
                record([item])
            else:
                yield item

    from gnnff.app import cli  # _write by its module name, so worker processes can import it

    write = functools.partial(cli._write, fmt=fmt)
    workers = machine.choose_workers(requested, count) if args.dask is None else 0
    try:
        with machine.one_torch_thread(), machine.dask_client(args.dask, local) as client:
            if client is None:
                batches = run(jobs(), model=model if workers == 1 else args.model, model_options=options,
                              write=write, work=work, workers=workers)
            else:
                batches = run_dask(jobs(), client=client, model=machine.model_for_workers(args.model),
                                   model_options=options, write=write, work=work)
            with contextlib.closing(batches):  # an interrupt cancels the chunks in flight first
                for done in batches:
                    record(done)
    finally:
        bar.close()
        reported = report is None or _report(rows, report)
    counts = {status: sum(row.status == status for row in rows) for status in ("ok", "failed", "skipped")}
    say(f"parametrized {counts['ok']} of {count} molecule(s) with model '{model.name}' "
        f"in {time.perf_counter() - start:.2f} s" + (f"; {counts['skipped']} skipped (output exists)"
                                                     if counts["skipped"] else "")
        + (f"; {counts['failed']} failed" if counts["failed"] else "")
        + (f"; report {report}.csv" if report is not None else ""))
    return 0 if counts["failed"] == 0 and reported else 1


def _recorder(rows: list, bar, say, model_name: str):
    """``record(new_rows)``: keep the rows, say one line for each (errors to stderr), advance the bar."""
    from tqdm import tqdm

    from gnnff.app.batch import one_line

    def record(new: list) -> None:
        for row in new:
            rows.append(row)
            if row.status == "failed":
                tqdm.write(f"gnnff: error: {one_line(row.error)}", file=sys.stderr)
            elif row.status == "skipped":
                say(f"skipped {row.output}  record {row.record}: output exists, made from the same molecule, "
                    "model and format (--overwrite redoes it)")
            else:
                say(f"wrote {row.output}  record {row.record}{f' ({row.name})' if row.name else ''}  "
                    f"{row.atoms} atoms  net charge {row.net_charge:+d}  model {model_name}")
        bar.update(len(new))

    return record


def _report(rows, stem: Path) -> bool:
    """Write the report (CSV + JSON); False, with an error line, if it cannot be written."""
    from gnnff.app.batch import write_report

    try:
        write_report(rows, stem)
    except OSError as err:
        print(f"gnnff: error: cannot write the report {stem}.csv ({err.strerror}); "
              "choose a writable output (-o)", file=sys.stderr)
        return False
    return True


def _models() -> int:
    """``gnnff models``: each model with what it is, its elements, charges, size and model card.

    Reading the checkpoints and Sage's element list imports torch and RDKit (~1 s), here only.
    """
    from importlib.metadata import entry_points

    from gnnff.sources.models import DEFAULT_MODEL, WEIGHTS_DIR, available_models

    plugins = {ep.name: ep.value for ep in entry_points(group="gnnff.models")}
    for name in available_models():
        print(name + ("  (default)" if name == DEFAULT_MODEL else ""))
        if name == "sage":
            details = _sage_details()
        elif (WEIGHTS_DIR / f"{name}.pt").is_file():
            details = _checkpoint_details(WEIGHTS_DIR / f"{name}.pt")
        elif name in plugins:
            details = {"description": f"plugin model (entry point {plugins[name]})"}
        else:
            details = {"description": "registered at run time (gnnff.register_model)"}
        for key, value in details.items():
            print(f"    {key:12s} {value}")
    return 0


def _element_symbols(numbers) -> str:
    from rdkit import Chem

    return " ".join(Chem.GetPeriodicTable().GetElementSymbol(int(z)) for z in sorted(numbers))


def _sage_details() -> dict[str, str]:
    from gnnff.sources.charges import CHARGE_METHODS
    from gnnff.sources.classical import SAGE_ELEMENTS, SAGE_OFFXML, SageSource

    default = SageSource().charges
    others = ", ".join(m for m in CHARGE_METHODS if m != default)
    return {"description": f"OpenFF Sage 2.2 + AM1-BCC ({SAGE_OFFXML}, classical)",
            "elements": _element_symbols(SAGE_ELEMENTS),
            "charges": f"{default} (default; --charges {others}); library charges for water and ions",
            "size": "-", "model card": "-"}


def _checkpoint_details(path: Path) -> dict[str, str]:
    from gnnff.nn.checkpoint import load_checkpoint
    from gnnff.nn.network import NetworkConfig

    try:
        payload = load_checkpoint(path)
        config = NetworkConfig.from_dict(payload["network"])
        elements = _element_symbols(payload["domain"]["elements"])
    except (GnnffError, KeyError, TypeError, ValueError) as err:
        return {"description": f"unreadable checkpoint ({' '.join(str(err).split())})"}
    tensors = payload["state_dict"].values()
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors})
    nonbonded = (f"; nonbonded network width {config.nonbonded_width}, depth {config.nonbonded_depth}"
                 if config.separate_nonbonded else "")
    card = path.with_suffix(".md")
    return {"description": f"gnnff GNN: message passing width {config.width}, depth {config.depth}; heads "
                           f"width {config.head_width}, depth {config.head_depth}; atom features "
                           f"{config.features}{nonbonded}",
            "elements": elements,
            "charges": ("predicted by the " + ("nonbonded network" if config.separate_nonbonded else "network")
                        + " (charge equilibration, exact net charge)"
                        + ("; library charges for ions" if config.separate_nonbonded else "")),
            "size": f"{path.stat().st_size / 1e6:.1f} MB, {sum(t.numel() for t in tensors):,} weights "
                    f"({', '.join(dtypes)})",
            "model card": str(card) if card.is_file() else "-"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "models":
            return _models()
        if args.command == "parametrize":
            return _parametrize(args)
        if args.command == "data":
            return _data(args)
        if args.command == "train":
            return _train(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "scan":
            return _scan(args)
        if args.command == "finetune":
            return _finetune(args)
    except GnnffError as err:
        print("gnnff: error: " + " ".join(str(err).split()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("gnnff: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
