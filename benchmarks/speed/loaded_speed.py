"""In-process parametrization on a quiet machine and with every core kept busy by other processes.

    python benchmarks/speed/loaded_speed.py [--molecule examples/aspirin.sdf] [--calls 50] [--busy N]

Times ``gnnff.parametrize(mol, model=source)`` (default model, loaded once; molecule
read once) in this process, median of ``--calls`` calls after one warm-up, in four
cases: the automatic thread choice (:mod:`gnnff.threads`) and PyTorch's default thread
count forced with ``gnnff.set_inference_threads`` (the behaviour before
``gnnff/threads.py``), each on the machine as it is ("quiet": no load from this script)
and with ``--busy`` processes (default: one per CPU) spinning ``while True: pass``,
started by this script and stopped before it exits. A case stops early after
``--budget`` seconds (at least 5 calls). Prints, per case, the median and 90th
percentile wall time, this process's CPU time per call (threads spinning against the
load inflate it; a fair share of a busy core does not), the 1-minute load average and
the share of CPU time the machine spent idle while the case ran (from ``/proc/stat``;
other jobs make "quiet" less quiet), then the loaded/quiet ratio of each setting (goal
for the automatic choice: at most 2). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import ROOT  # noqa: E402


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of the whole machine, or None where /proc/stat is missing."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)


def timed(fn: Callable[[], object], calls: int, budget: float) -> tuple[list[float], float, float | None]:
    """Wall times (s) of up to ``calls`` calls of ``fn`` (at least 5, else stop after ``budget`` s),
    this process's CPU time per call (s, all its threads) and the machine's idle CPU share meanwhile."""
    fn()  # warm-up
    before, times, start, cpu0 = cpu_times(), [], time.perf_counter(), time.process_time()
    while len(times) < calls and (len(times) < 5 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / len(times)
    after = cpu_times()
    idle = None
    if before is not None and after is not None and after[1] > before[1]:
        idle = (after[0] - before[0]) / (after[1] - before[1])
    return times, cpu, idle


def busy_processes(n: int) -> list[subprocess.Popen]:
    """Start ``n`` processes that each keep one core busy, each in its own session (as another
    user's job would be: with Linux's autogroup scheduling, loops in this process's session
    would take their CPU share from this process alone)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
             for _ in range(n)]
    time.sleep(1.0)  # let them start spinning
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default=str(ROOT / "examples" / "aspirin.sdf"))
    parser.add_argument("--calls", type=int, default=50, help="calls per case (default 50)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes in the loaded cases (default: one per CPU)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per case at most (default 60)")
    args = parser.parse_args()
    import torch

    import gnnff

    source = gnnff.get_model()
    mol = gnnff.load_molecule(args.molecule)
    default_threads = torch.get_num_threads()
    print(f"molecule {args.molecule} ({mol.GetNumAtoms()} atoms), model {source.name}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} before; torch {torch.__version__}, {default_threads} threads "
          f"by default; GNNFF_NUM_THREADS={os.environ.get('GNNFF_NUM_THREADS', '(unset)')}")
    settings = {"automatic (gnnff.threads)": None,
                f"{default_threads} threads forced (torch default, old behaviour)": default_threads}
    rows: dict[tuple[str, str], tuple[list[float], float, float | None, float]] = {}

    def run(load: str) -> None:
        for label, threads in settings.items():
            previous = gnnff.set_inference_threads(threads)
            try:
                times, cpu, idle = timed(lambda: gnnff.parametrize(mol, model=source), args.calls, args.budget)
            finally:
                gnnff.set_inference_threads(previous)
            rows[label, load] = times, cpu, idle, os.getloadavg()[0]

    run("quiet")
    procs = busy_processes(args.busy)
    try:
        run(f"{args.busy} busy")
    finally:
        stop(procs)
    assert torch.get_num_threads() == default_threads

    print(f"\n{'threads':50s} {'machine':>7s} {'calls':>5s} {'median ms':>10s} {'p90 ms':>9s} "
          f"{'CPU ms':>7s} {'load':>5s} {'idle CPU':>8s}")
    for (label, load), (times, cpu, idle, loadavg) in rows.items():
        p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
        print(f"{label:50s} {load:>7s} {len(times):5d} {statistics.median(times) * 1e3:10.2f} {p90 * 1e3:9.2f} "
              f"{cpu * 1e3:7.2f} {loadavg:5.2f} {'n/a' if idle is None else f'{idle:.0%}':>8s}")
    print()
    for label in settings:
        quiet, loaded = (statistics.median(rows[label, load][0]) for load in ("quiet", f"{args.busy} busy"))
        print(f"{label}: loaded/quiet {loaded / quiet:.2f}" + ("  (goal <= 2)" if label.startswith("automatic")
                                                               else ""))


if __name__ == "__main__":
    main()
