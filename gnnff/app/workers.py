"""How a batch uses the machine: worker processes from the idle cores, one torch thread
per process, a dask.distributed client for ``--dask``. The CLI passes its options here.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from gnnff.errors import InputError

__all__ = ["AUTO_WORKERS_MIN_MOLECULES", "choose_workers", "dask_client", "dask_option", "idle_cores",
           "model_for_workers", "one_torch_thread", "requested_workers"]


_DASK_INSTALL = "pip install 'gnnff[dask]'"


def dask_option(value: str | None, workers: str | None) -> int | None:
    """Check ``--dask`` (and that dask.distributed is installed) before anything is read;
    return the number of local workers for ``local:N`` (0 for ``local``), None for an address."""
    if value is None:
        return None
    if workers is not None:
        raise InputError("--workers and --dask exclude each other: use --dask local:N for N local workers")
    try:
        import distributed  # noqa: F401 - checked here, used in dask_client
    except ImportError:
        raise InputError(f"--dask needs dask.distributed, which is not installed: {_DASK_INSTALL}") from None
    name, _, number = value.partition(":")
    if name != "local":
        if not value.strip():
            raise InputError("--dask needs a scheduler address (tcp://host:8786) or local[:N]")
        return None
    if not number:
        return 0
    if not number.isdigit() or int(number) < 1:
        raise InputError(f"--dask local:N needs a number of workers of at least 1, not '{number}'")
    return int(number)


@contextlib.contextmanager
def dask_client(value: str | None, local: int | None) -> Iterator:
    """A dask.distributed Client for ``--dask`` (None without): connected to the scheduler
    at ``value``, or to a LocalCluster of ``local`` single-threaded worker processes (0: one
    per core) that is shut down after."""
    if value is None:
        yield None
        return
    import logging

    from distributed import Client, LocalCluster

    if local is None:
        try:
            client = Client(value, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"--dask {value}: cannot connect to a dask scheduler ({_reason(err)}); "
                             "start one (dask scheduler) and its workers, or use --dask local") from None
        with client:
            yield client
        return
    import dask

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes gnnff ~40%
    # slower (RDKit and torch allocate many small blocks); these workers keep glibc's default
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=local or cores, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=logging.CRITICAL, preload=["gnnff.app.batch"]) as cluster, \
            Client(cluster) as client:  # errors reach the report as rows; dask's own logs stay quiet
        yield client


def _reason(err: BaseException) -> str:
    """``err`` as one line."""
    return " ".join(str(err).split()) or type(err).__name__


def model_for_workers(model: str | None) -> str | None:
    """``--model`` as workers load it: a checkpoint file by its absolute path (their folder may differ)."""
    if model is not None and Path(model).is_file():
        return str(Path(model).resolve())
    return model


#: Below this many molecules, starting worker processes (~3 s) costs more than it saves.
AUTO_WORKERS_MIN_MOLECULES = 500


def requested_workers(value: str) -> int | None:
    """``--workers``: a positive number, or None for auto."""
    if value == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InputError(f"--workers must be a number of at least 1 or 'auto', not '{value}'")
    return number


def choose_workers(requested: int | None, count: int) -> int:
    """Worker processes for ``count`` molecules: as requested, or (auto) one per idle core when
    there are enough molecules; busy cores make workers slower than one process (measured)."""
    if requested is not None:
        return max(1, min(requested, count))
    if count < AUTO_WORKERS_MIN_MOLECULES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, int(idle_cores(cores) + 0.5)))


def idle_cores(cores: int, window: float = 0.3) -> float:
    """Cores idle right now: /proc/stat over ``window`` seconds (Linux), else from the load average."""
    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user .. steal

    try:
        idle0, total0 = idle_and_total()
        time.sleep(window)
        idle1, total1 = idle_and_total()
        machine = os.cpu_count() or cores
        return min(cores, machine * (idle1 - idle0) / max(total1 - total0, 1))
    except (OSError, ValueError, IndexError):
        return cores - os.getloadavg()[0]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the network on one thread (restored after): its matrices are small, extra threads
    gain little on an idle machine and cost several-fold on a busy one; --workers uses the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
