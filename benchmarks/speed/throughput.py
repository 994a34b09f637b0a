"""Parametrization throughput: distinct drug-like molecules per second with the default model.

    python benchmarks/speed/throughput.py [--molecules 1000] [--workers 2] [--cli] [--profile] [--model M]

Takes the first N distinct molecules (by ``SMILES QCArchive``) of
``../shared/data/industry-benchmark-dev.sdf.gz`` (reading them is not timed) and times:

- ``gnnff.assign_parameters(mol, model=source).to_openmm()`` one molecule after the other,
  the model object loaded once, with PyTorch's default thread count and with one thread;
- the same in ``--workers`` processes of one thread each (:class:`gnnff.pool.WorkerPool`, molecules
  handed out in chunks; includes pickling the molecules, not the Systems, back);
- ``gnnff.assign_parameters_many`` (batched network calls) + ``to_openmm`` of each, at
  both thread counts;
- ``gnnff.to_xml`` of each System (what the command line writes), separately;
- a diagnostic of batching: the topologies of 64 molecules joined with
  ``Topology.batch``, one network forward per batch, parameters sliced per molecule and
  exported; shows what a batched path inside gnnff could reach;
- the same in ``--workers`` processes with ``assign_parameters_many`` per chunk of 32;
- with ``--cli``: ``gnnff parametrize many.sdf -o outdir -q`` on the same molecules
  written to one SDF, wall time of the whole process, with ``--workers 1`` and ``--workers N``; and
  the rate past start-up (a run of the first quarter subtracted), what a library sees.

``--profile`` prints the top of a cProfile of the one-by-one loop. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gnnff
from gnnff.pool import WorkerPool, worker_state

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "industry-benchmark-dev.sdf.gz"


def distinct_molecules(path: Path, n: int) -> list:
    """First ``n`` distinct molecules (by the ``SMILES QCArchive`` SD property) of a file."""
    seen, mols = set(), []
    for record in gnnff.read_records(path):
        if record.mol is None:
            continue
        key = record.mol.GetProp("SMILES QCArchive") if record.mol.HasProp("SMILES QCArchive") else record.label
        if key in seen:
            continue
        seen.add(key)
        mols.append(record.mol)
        if len(mols) == n:
            break
    return mols


def one_by_one(mols: list, source) -> float:
    start = time.perf_counter()
    for mol in mols:
        gnnff.assign_parameters(mol, model=source).to_openmm()
    return time.perf_counter() - start


def many(mols: list, source) -> float:
    """``gnnff.assign_parameters_many`` (batched network calls) + ``to_openmm`` of each."""
    start = time.perf_counter()
    results = gnnff.assign_parameters_many(mols, model=source)
    for result in results:
        if isinstance(result, gnnff.GnnffError):
            raise result
        result.to_openmm()
    return time.perf_counter() - start


_READY = None  # a barrier of all the workers, set once per worker


def _init_worker(model: str | None, ready):
    """The model, loaded once per worker process (the pool's state)."""
    global _READY
    _READY = ready
    return gnnff.get_model(model)


def _ready(_) -> None:
    """Wait until every worker has loaded its model (each worker takes one of these)."""
    _READY.wait()


def _work(mol) -> int:
    return gnnff.assign_parameters(mol, model=worker_state()).to_openmm().getNumParticles()


def _work_batch(mols: list) -> int:
    return sum(r.to_openmm().getNumParticles() for r in gnnff.assign_parameters_many(mols, model=worker_state()))


def _all(results) -> list:
    """The values of pool results; the first failure raised."""
    values = []
    for result in results:
        if not result.ok:
            raise RuntimeError(f"item {result.index}: {result.failure}")
        values.append(result.value)
    return values


def pooled(mols: list, workers: int, model: str | None = None, batched: bool = False) -> tuple[float, float]:
    """(seconds including pool start and model loads, seconds of the map alone); each
    worker (spawned, one thread) builds the Systems (one by one, or
    ``assign_parameters_many`` per chunk of 32)."""
    import multiprocessing

    ready = multiprocessing.get_context("spawn").Barrier(max(workers, 1))
    start = time.perf_counter()
    with WorkerPool(workers, initializer=_init_worker, initargs=(model, ready)) as pool:
        _all(pool.imap(_ready, range(max(workers, 1))))  # wait until every worker has its model
        started = time.perf_counter()
        if batched:
            _all(pool.imap(_work_batch, [mols[k:k + 32] for k in range(0, len(mols), 32)]))
        else:
            _all(pool.imap(_work, mols, chunksize=max(1, len(mols) // (8 * workers))))
        end = time.perf_counter()
    return end - start, end - started


def _rows(params, offsets: dict[str, int], counts: dict[str, int]):
    """The rows ``offsets[term] : offsets[term] + counts[term]`` of every term of batched parameters."""
    return params.map(lambda term, name, x: x[offsets[term.name]:offsets[term.name] + counts[term.name]])


def batched(mols: list, source, size: int = 64) -> float:
    """Diagnostic: one network forward per ``size`` molecules, export per molecule."""
    import torch

    from gnnff.nn.checkpoint import graph
    from gnnff.schema import TERMS

    start = time.perf_counter()
    for first in range(0, len(mols), size):
        chunk = [gnnff.load_molecule(m) for m in mols[first:first + size]]
        tops = [gnnff.build_topology(m) for m in chunk]
        with torch.no_grad():
            params = source.network(graph(chunk, tops, source.config.features))
        offsets = {term.name: 0 for term in TERMS}
        for top in tops:
            counts = top.counts()
            gnnff.to_openmm(top, _rows(params, offsets, counts))
            offsets = {name: offsets[name] + counts[name] for name in offsets}
    return time.perf_counter() - start


def cli(mols: list, extra: tuple[str, ...] = ()) -> float:
    from rdkit import Chem

    exe = shutil.which("gnnff") or shutil.which("gnnff", path=str(Path(sys.executable).parent))
    with tempfile.TemporaryDirectory() as tmp:
        sdf = os.path.join(tmp, "many.sdf")
        with Chem.SDWriter(sdf) as writer:
            for mol in mols:
                writer.write(mol)
        start = time.perf_counter()
        subprocess.run([exe, "parametrize", sdf, "-o", os.path.join(tmp, "outdir"), "-q", *extra], check=False,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        written = len(list(Path(tmp, "outdir").glob("*.xml")))
    print(f"  (CLI wrote {written} XML files)")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=1000)
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cli", action="store_true", help="also time `gnnff parametrize many.sdf -o outdir`")
    parser.add_argument("--profile", action="store_true", help="cProfile the one-by-one loop (1 thread)")
    parser.add_argument("--model", default=None, help="gnnff model name or .pt (default: the default model)")
    args = parser.parse_args()
    import torch

    start = time.perf_counter()
    mols = distinct_molecules(Path(args.data), args.molecules)
    n = len(mols)
    atoms = sum(m.GetNumAtoms() for m in mols)
    print(f"{n} distinct molecules ({atoms / n:.0f} atoms on average) read in {time.perf_counter() - start:.1f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    source = gnnff.get_model(args.model)
    default_threads = torch.get_num_threads()
    one_by_one(mols[:20], source)  # warm-up
    rows = []
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        rows.append((f"one by one, {threads} torch thread(s)", one_by_one(mols, source)))
        if hasattr(gnnff, "assign_parameters_many"):
            rows.append((f"assign_parameters_many, {threads} torch thread(s)", many(mols, source)))
    systems = [gnnff.assign_parameters(m, model=source).to_openmm() for m in mols]
    start = time.perf_counter()
    for system in systems:
        gnnff.to_xml(system)
    rows.append(("to_xml of every System (alone)", time.perf_counter() - start))
    rows.append(("batched forward, 64 per batch, 1 thread (diagnostic)", batched(mols, source)))
    torch.set_num_threads(default_threads)
    total, mapped = pooled(mols, args.workers, args.model)
    rows.append((f"{args.workers} worker processes x 1 thread (incl. pool start)", total))
    rows.append((f"{args.workers} worker processes x 1 thread (map only)", mapped))
    total, mapped = pooled(mols, args.workers, args.model, batched=True)
    rows.append((f"{args.workers} workers x 1 thread, assign_parameters_many per 32 (map only)", mapped))
    marginal = []
    if args.cli:
        model = ("--model", args.model) if args.model else ()
        for workers in (1, args.workers):  # explicit: the default (auto) depends on the load average
            extra = ("--workers", str(workers))
            label = f"gnnff parametrize many.sdf -o outdir --workers {workers}"
            whole, part = cli(mols, (*model, *extra)), cli(mols[:n // 4], (*model, *extra))
            rows.append((f"{label} (whole process)", whole))
            marginal.append((f"{label}: molecules {n // 4 + 1}-{n} (whole runs minus a {n // 4}-molecule run)",
                             whole - part, n - n // 4))
    print(f"{'what':80s} {'seconds':>9s} {'molecules/s':>12s} {'ms/molecule':>12s}")
    for label, seconds in rows:
        print(f"{label:80s} {seconds:9.2f} {n / seconds:12.1f} {1000 * seconds / n:12.2f}")
    for label, seconds, count in marginal:  # the rate once the process has started (library scale)
        print(f"{label:80s} {seconds:9.2f} {count / seconds:12.1f} {1000 * seconds / count:12.2f}")
    print("targets on 2 cores: >= 500 molecules/s to openmm.System in process, >= 250 through the CLI writing XML")
    if args.profile:
        torch.set_num_threads(1)
        profiler = cProfile.Profile()
        profiler.enable()
        one_by_one(mols, source)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())


if __name__ == "__main__":
    main()
