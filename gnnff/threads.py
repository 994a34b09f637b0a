"""How many threads the network uses on one graph (PyTorch intra-op parallelism).

Inference on a molecule is a few hundred tiny operations. On idle cores a second thread
saves a little (aspirin 4.0 -> 3.4 ms; about 0.6x the network time from 50 to 20,000
atoms), but when other processes keep the cores busy every parallel region waits for a
thread the scheduler has put aside: aspirin went from 5 ms to 780 ms, a 1,000-atom graph
from 0.10 to 0.30 s (2 cores). So :func:`inference_threads` runs a graph of fewer than
:data:`SMALL_GRAPH_ATOMS` atoms on one thread, whatever the machine does, and a larger
one on as many threads as the caller allows and the machine has idle (cores available
to this process, less the 1-minute load average). It restores the caller's setting on
exit, also after an exception; inter-op threads are not touched. The API, the OpenMM
template generator, ``simulate``, ``evaluate`` and the CLI all reach the network through
:class:`gnnff.sources.gnn.GNNSource`, which runs it inside this context.

Users choose instead, in this order of precedence:

1. :func:`set_inference_threads` (``gnnff.set_inference_threads(4)``; ``None`` hands
   the choice back);
2. the environment variable ``GNNFF_NUM_THREADS`` (a positive integer, or ``auto``);
3. the automatic choice above.

``torch.set_num_threads`` is process-wide in PyTorch's documentation but kept per
thread by its OpenMP builds (the CPU wheels); each context saves and restores the value
its own thread saw, so nested contexts and several Python threads each get their own
setting back.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

from gnnff.errors import GnnffError

__all__ = ["ENV", "SMALL_GRAPH_ATOMS", "available_cores", "choose_threads", "inference_threads", "serial_numerics",
           "set_inference_threads"]

#: Environment variable that fixes the thread count (a positive integer, or ``auto``).
ENV = "GNNFF_NUM_THREADS"

#: Graphs with fewer atoms run on one thread: below this, a second thread saves at most
#: ~25 ms on idle cores (975 atoms: 69 -> 43 ms) but can cost ~1 s on busy ones (480 atoms:
#: 45 ms -> 1.0 s), and the load average is too slow a signal to tell the two apart.
SMALL_GRAPH_ATOMS = 1000

_override: int | None = None


def set_inference_threads(threads: int | None) -> int | None:
    """Fix the number of threads the network uses on every graph, or None for automatic.

    Takes precedence over ``GNNFF_NUM_THREADS``; applies to this process, from the next
    call on. Returns the previous setting (to restore it later).

    Raises
    ------
    ValueError
        ``threads`` is not a positive integer or None.
    """
    global _override
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"set_inference_threads({threads!r}): give a positive number of threads, "
                         "or None for the automatic choice")
    previous, _override = _override, threads
    return previous


def _requested() -> int | None:
    """The user's fixed thread count (function, then environment), or None for automatic."""
    if _override is not None:
        return _override
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("", "auto"):
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise GnnffError(f"{ENV}={value!r}: give a positive number of threads or 'auto' "
                     f"(or unset it for the automatic choice)")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota() -> int | None:
    """Whole cores allowed by a cgroup CPU quota (v2 ``cpu.max``, v1 ``cfs_quota_us``), else None."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as handle:
                quota = handle.read().strip()
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as handle:
                period = handle.read().strip()
        except OSError:
            return None
    try:
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def _idle_cores() -> int:
    """Cores of the machine not busy over the last minute (load average), at least 1."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): assume the cores are ours
        return available_cores()
    return max(1, int((os.cpu_count() or 1) - load + 0.5))


def choose_threads(n_atoms: int, current: int) -> int:
    """Intra-op threads for a graph of ``n_atoms`` atoms when the caller has ``current``.

    The user's setting if there is one; else 1 below :data:`SMALL_GRAPH_ATOMS` atoms;
    else ``current`` capped by the available and the idle cores.
    """
    requested = _requested()
    if requested is not None:
        return requested
    if n_atoms < SMALL_GRAPH_ATOMS:
        return 1
    return max(1, min(current, available_cores(), _idle_cores()))


@contextlib.contextmanager
def inference_threads(n_atoms: int) -> Iterator[int]:
    """Run the enclosed network call on :func:`choose_threads` threads; yield that number.

    The calling thread's ``torch.get_num_threads()`` is restored on exit, also after an
    exception; contexts nest (an inner one sees the outer's count as the caller's).
    """
    import torch

    before = torch.get_num_threads()
    threads = choose_threads(n_atoms, before)
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def serial_numerics() -> Iterator[None]:
    """One thread for PyTorch and for the BLAS and OpenMP pools of numpy and SciPy
    (threadpoolctl) inside the context; the caller's settings are restored on exit.

    For work made of many small linear-algebra calls, such as geomeTRIC's internal
    coordinates in a torsion drive (matrices of a few hundred rows): there a second
    BLAS thread only waits. Measured on 2 cores, four constrained optimisations of a
    42-atom ligand with ANI-2x (60 energy evaluations) took 167 s with OpenBLAS's default
    threads while a second such process ran, 9.9 s with one thread.
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
