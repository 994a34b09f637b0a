"""gnnff beside the classical parametrizations users know, on one molecule, in one process.

    python benchmarks/speed/peers.py [--molecule examples/aspirin.sdf] [--repeat 20] [--repeat-classical 3]

Rows (every one a fresh parametrization of the molecule; imports, model and force-field
files loaded once before timing, so the times are warm):

- gnnff, the default model: ``gnnff.parametrize(mol)`` as a user writes it (the model
  is resolved, i.e. its checkpoint read, on every call), then with the model object
  from ``gnnff.get_model()`` reused, at PyTorch's default thread count and at one thread;
- GAFF-2.11 + AM1-BCC: openmmforcefields' ``GAFFTemplateGenerator`` registered on an
  ``openmm.app.ForceField``, ``createSystem`` on the ligand topology (a new generator
  per repeat, so its per-molecule template cache never answers);
- Sage 2.2 + AM1-BCC through gnnff's classical path
  (``gnnff.parametrize(mol, model="sage", charges="am1bcc")``);
- the whole command line, ``gnnff parametrize MOLECULE -o OUT.xml`` in a subprocess
  (Python start, imports, model load, parametrize, XML write), wall time.

Prints medians (and min/max), each row's time as a multiple of the first row's, and the
speed-up of gnnff over GAFF; nothing is asserted.
Needs openmmforcefields (``pip install gnnff[bench]``) and AmberTools.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gnnff

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import ROOT  # noqa: E402


def timings(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times (s) of ``repeat`` calls of ``fn``."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def gaff_system(mol):
    """GAFF-2.11 + AM1-BCC System of an RDKit molecule, the way openmmforcefields users make it."""
    from openff.toolkit import Molecule
    from openmm import app
    from openmmforcefields.generators import GAFFTemplateGenerator

    offmol = Molecule.from_rdkit(mol, allow_undefined_stereo=True)
    generator = GAFFTemplateGenerator(molecules=[offmol], forcefield="gaff-2.11")
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(generator.generator)
    return forcefield.createSystem(offmol.to_topology().to_openmm(), nonbondedMethod=app.NoCutoff)


def cli_timings(molecule: str, repeat: int) -> list[float]:
    """Wall times of ``gnnff parametrize MOLECULE -o OUT.xml`` as a fresh process."""
    exe = shutil.which("gnnff") or shutil.which("gnnff", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "gnnff"]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([*command, "parametrize", molecule, "-o", os.path.join(tmp, "x.xml"), "-q"],
                           check=True, stdout=subprocess.DEVNULL)
            out.append(time.perf_counter() - start)
    return out


def row(label: str, seconds: list[float], reference: float | None) -> str:
    median = statistics.median(seconds)
    ratio = f"{median / reference:10.{0 if median > 10 * reference else 2}f}x" if reference else f"{'':>11s}"
    return (f"{label:48s} {len(seconds):4d} {1000 * median:12.1f} {1000 * min(seconds):10.1f} "
            f"{1000 * max(seconds):10.1f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default=str(ROOT / "examples" / "aspirin.sdf"))
    parser.add_argument("--repeat", type=int, default=20, help="repeats of the gnnff rows (default 20)")
    parser.add_argument("--repeat-classical", type=int, default=3,
                        help="repeats of the GAFF and Sage + AM1-BCC rows (default 3; ~5-20 s each)")
    parser.add_argument("--repeat-cli", type=int, default=5)
    parser.add_argument("--skip-classical", action="store_true", help="only the gnnff rows")
    args = parser.parse_args()
    import torch

    mol = gnnff.load_molecule(args.molecule)
    model = gnnff.get_model()
    default_threads = torch.get_num_threads()
    print(f"molecule {args.molecule} ({mol.GetNumAtoms()} atoms); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}, {default_threads} threads")
    results: dict[str, list[float]] = {}
    gnnff.parametrize(mol, model=model)  # warm-up
    results[f"gnnff.parametrize(mol), {default_threads} torch threads"] = timings(
        lambda: gnnff.parametrize(mol), args.repeat)
    results[f"  same, model object reused, {default_threads} threads"] = timings(
        lambda: gnnff.parametrize(mol, model=model), args.repeat)
    torch.set_num_threads(1)
    gnnff.parametrize(mol, model=model)
    results["  same, model object reused, 1 thread"] = timings(
        lambda: gnnff.parametrize(mol, model=model), args.repeat)
    torch.set_num_threads(default_threads)
    if not args.skip_classical:
        gaff_system(mol)  # warm-up: imports, GAFF parameter files
        results["GAFF-2.11 + AM1-BCC (openmmforcefields)"] = timings(lambda: gaff_system(mol),
                                                                     args.repeat_classical)
        gnnff.parametrize(mol, model="sage", charges="mmff94")  # warm-up: loads Sage, not timed
        results["Sage 2.2 + AM1-BCC (gnnff model='sage')"] = timings(
            lambda: gnnff.parametrize(mol, model="sage", charges="am1bcc"), args.repeat_classical)
    results["gnnff parametrize CLI, whole process"] = cli_timings(args.molecule, args.repeat_cli)
    reference = statistics.median(next(iter(results.values())))
    print(f"{'method':48s} {'runs':>4s} {'median ms':>12s} {'min ms':>10s} {'max ms':>10s} {'x gnnff':>11s}")
    for label, seconds in results.items():
        print(row(label, seconds, reference if "CLI" not in label else None))
    if not args.skip_classical:
        gaff = statistics.median(results["GAFF-2.11 + AM1-BCC (openmmforcefields)"])
        best = min(statistics.median(v) for k, v in results.items() if "CLI" not in k and "AM1-BCC" not in k)
        print(f"gnnff is {gaff / reference:.0f}x faster than GAFF-2.11 + AM1-BCC as gnnff.parametrize(mol), "
              f"{gaff / best:.0f}x with the model object reused and the best thread count (target >= 300x)")
    cli = statistics.median(results["gnnff parametrize CLI, whole process"])
    print(f"CLI, one molecule, whole process: {cli:.2f} s median (target <= 3 s)")


if __name__ == "__main__":
    main()
