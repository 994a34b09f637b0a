"""Worker processes for every parallel path of gnnff: one pool, one set of rules.

Batch parametrization, reference labels, data generation, fine-tuning labels, the
condensed-phase charge cache and the benchmarks all hand independent items to
:class:`WorkerPool`::

    with WorkerPool(workers, initializer=load_model, initargs=(name,)) as pool:
        for result in pool.imap(parametrize_one, items, ordered=False, progress=on_done):
            ...

What every caller gets:

- **spawn**, always: a worker starts from a fresh interpreter, never from a fork of a
  parent that holds threads (torch, OpenMM, tqdm) or locks. The function, the
  initializer and their arguments must therefore be importable (module-level, not
  lambdas; a script's ``__main__`` functions are fine behind ``if __name__ ==
  "__main__"``) and picklable.
- **an initializer run once per worker** (load a model, a labeler); what it returns is
  :func:`worker_state` inside that worker. Workers run on ``threads`` torch, OpenMP and
  BLAS threads each (default 1: the processes share the cores) and ignore SIGINT
  (Ctrl-C is the parent's).
- **per-item errors as results**: an exception of one item becomes that item's
  :class:`Failure` (its type and one-line message) in its :class:`Result`; the other
  items and the pool go on. A failing initializer is raised in the parent, as is a
  worker that dies (:class:`WorkerDied`).
- **ordered or as-completed** results (``ordered``), ``chunksize`` items per hand-over,
  at most ``in_flight`` items handed out and not yet returned (lazy inputs stay lazy).
- **progress**: ``progress(result)`` in the parent as each item finishes, also when
  results are returned in input order.
- **Ctrl-C**: a KeyboardInterrupt in the parent (or raised by an item in a worker), an
  exception, or closing the results before their end terminates the workers at once
  (no orphan process is left) and re-raises.
- ``workers`` 0 or 1: no process at all; the initializer and the items run here, with the
  same results, failures and progress (and this process's thread settings untouched).
"""

from __future__ import annotations

import contextvars
import itertools
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gnnff.errors import GnnffError, first_line

__all__ = ["Failure", "Result", "WorkerDied", "WorkerPool", "worker_state"]

T = TypeVar("T")

#: Environment variables that fix the thread pools of OpenMP (torch), OpenBLAS and MKL.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: Seconds a terminated worker gets to exit before it is killed.
_GRACE = 5.0


class WorkerDied(GnnffError):
    """A worker process ended without returning its items (killed by the system, out of
    memory, or crashed in native code)."""


@dataclass(frozen=True)
class Failure:
    """Why one item failed.

    Attributes
    ----------
    kind
        The exception's class name (``"KeyError"``, ``"ChemistryError"``).
    message
        The first line of its message (the class name when it has none).
    gnnff
        Whether it was a :class:`~gnnff.errors.GnnffError`, whose message names the input
        and the fix; any other exception is unexpected (a bug, a foreign library's error).
    """

    kind: str
    message: str
    gnnff: bool

    @classmethod
    def of(cls, err: BaseException) -> Failure:
        """The failure an exception describes."""
        return cls(type(err).__name__, first_line(err), isinstance(err, GnnffError))

    def __str__(self) -> str:
        """The message for a gnnff error; ``Kind: message`` for any other."""
        return self.message if self.gnnff else f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class Result(Generic[T]):
    """What became of one item: its value, or its failure.

    Attributes
    ----------
    index
        The item's 0-based position in the input.
    item
        The item itself.
    value
        What the function returned (None when it failed).
    failure
        Why it failed, or None.
    """

    index: int
    item: Any
    value: T | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        """Whether the function returned."""
        return self.failure is None


# The initializer's return value: in a worker process, set once by _bootstrap; in this
# process (workers <= 1), set around each item's call by the pool that runs it.
_STATE: Any = None
_INIT_FAILED: tuple[Failure, BaseException | None] | None = None
_LOCAL_STATE: contextvars.ContextVar[tuple[Any]] = contextvars.ContextVar("gnnff_pool_state")


def worker_state() -> Any:
    """The value the pool's initializer returned, where an item runs (None without one)."""
    local = _LOCAL_STATE.get(None)
    return local[0] if local is not None else _STATE


def _set_threads(threads: int | None) -> None:
    """One worker's thread pools: the environment for libraries not yet loaded, torch if it is."""
    if threads is None:
        return
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _bootstrap(threads: int | None, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    """Start of every worker process: SIGINT ignored, thread pools set, the initializer run once.

    An initializer's exception is kept (with the exception itself when it pickles) and
    handed back by the worker's first chunk, so the parent raises it.
    """
    global _STATE, _INIT_FAILED
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it terminates the pool
    _set_threads(threads)
    if initializer is None:
        return
    try:
        _STATE = initializer(*initargs)
    except Exception as err:  # noqa: BLE001 - raised in the parent, by the first chunk
        try:
            pickle.dumps(err)
        except Exception:  # noqa: BLE001 - an exception that does not pickle is described instead
            _INIT_FAILED = (Failure.of(err), None)
        else:
            _INIT_FAILED = (Failure.of(err), err)
    _set_threads(threads)  # the initializer may have imported torch


@dataclass(frozen=True)
class _InitializerFailed:
    """A worker's answer when its initializer raised."""

    failure: Failure
    error: BaseException | None


def _call(fn: Callable[[Any], T], item: Any) -> tuple[T | None, Failure | None]:
    try:
        return fn(item), None
    except Exception as err:  # noqa: BLE001 - one item's failure is that item's result
        return None, Failure.of(err)


def _run_chunk(fn: Callable[[Any], T], chunk: list) -> list[tuple[T | None, Failure | None]] | _InitializerFailed:
    """Run ``fn`` on each item of a chunk, in a worker; a KeyboardInterrupt goes to the parent."""
    if _INIT_FAILED is not None:
        return _InitializerFailed(*_INIT_FAILED)
    return [_call(fn, item) for item in chunk]


def _chunks(items: Iterable[Any], size: int) -> Iterator[tuple[int, list]]:
    """``(index of the first item, items)`` of ``size`` consecutive items at a time."""
    iterator, start = iter(items), 0
    while chunk := list(itertools.islice(iterator, size)):
        yield start, chunk
        start += len(chunk)


class WorkerPool:
    """Worker processes (spawned) that run a function over items; see the module's description.

    Parameters
    ----------
    workers
        Worker processes; 0 or 1 runs everything in this process, without a pool.
    initializer, initargs
        ``initializer(*initargs)``, run once in each worker when it starts (in this
        process on entry when ``workers`` <= 1); its return value is :func:`worker_state`.
    threads
        Torch, OpenMP and BLAS threads of each worker process (None: their defaults). This
        process's settings are never changed.
    in_flight
        Items handed to the workers and not yet returned, at most (default: eight
        chunks per worker).

    Use it as a context manager: leaving the block normally waits for the workers to
    exit; leaving it by an exception (KeyboardInterrupt included) terminates them.
    """

    def __init__(self, workers: int, *, initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                 threads: int | None = 1, in_flight: int | None = None) -> None:
        self.workers = max(int(workers), 0)
        self.initializer, self.initargs, self.threads = initializer, tuple(initargs), threads
        self.in_flight = in_flight
        self._executor = None
        self._state: tuple[Any] | None = None
        self._pending: dict = {}  # future -> (index of its first item, its items), of the running imap
        self._open = False

    @property
    def in_process(self) -> bool:
        """Whether items run in this process (``workers`` 0 or 1)."""
        return self.workers <= 1

    def __enter__(self) -> WorkerPool:
        if self._open:
            raise RuntimeError("WorkerPool: this pool is already open")
        self._open = True
        if self.in_process:
            self._state = (self.initializer(*self.initargs) if self.initializer is not None else None,)
        else:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self._executor = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                                 initializer=_bootstrap,
                                                 initargs=(self.threads, self.initializer, self.initargs))
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, trace: Any) -> None:
        if kind is not None or self._pending:
            self.terminate()
        else:
            self.close()

    def close(self) -> None:
        """Let the workers finish what they hold and exit; wait for them."""
        self._open = False
        self._state = None
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def terminate(self) -> None:
        """Stop the workers now (SIGTERM, then SIGKILL after a grace period) and wait for them."""
        self._open = False
        self._state = None
        self._pending.clear()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        try:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(_GRACE)
        finally:  # also when a second Ctrl-C cuts the wait short
            for process in processes:
                if process.is_alive():
                    process.kill()
                    process.join()
        executor.shutdown(wait=True, cancel_futures=True)

    def imap(self, fn: Callable[[Any], T], items: Iterable[Any], *, ordered: bool = True, chunksize: int = 1,
             progress: Callable[[Result[T]], None] | None = None) -> Iterator[Result[T]]:
        """``fn(item)`` for every item, as :class:`Result` s: in input order (``ordered``) or
        as they finish. ``items`` is read lazily; ``chunksize`` items go to a worker at a
        time; ``progress(result)`` runs here as each item finishes. Closing the iterator
        (or an exception, or Ctrl-C, while it waits) before its end terminates the workers.

        Raises
        ------
        WorkerDied
            A worker process ended while it held items.
        KeyboardInterrupt
            Ctrl-C here, or an item raised it in a worker.
        """
        if not self._open:
            raise RuntimeError("WorkerPool.imap: use the pool inside its 'with' block (it is not open)")
        if self._pending:
            raise RuntimeError("WorkerPool.imap: the pool's previous results are not finished; "
                               "read them to the end, or close them, first")
        if chunksize < 1:
            raise ValueError(f"WorkerPool.imap: chunksize must be at least 1, got {chunksize}")
        if self.in_process:
            return self._imap_here(fn, items, progress, self._state)
        return self._imap_workers(fn, items, ordered, chunksize, progress)

    @staticmethod
    def _imap_here(fn: Callable[[Any], T], items: Iterable[Any], progress: Callable[[Result[T]], None] | None,
                   state: tuple[Any]) -> Iterator[Result[T]]:
        for index, item in enumerate(items):
            token = _LOCAL_STATE.set(state)
            try:
                value, failure = _call(fn, item)
            finally:
                _LOCAL_STATE.reset(token)
            result = Result(index, item, value, failure)
            if progress is not None:
                progress(result)
            yield result

    def _imap_workers(self, fn: Callable[[Any], T], items: Iterable[Any], ordered: bool, chunksize: int,
                      progress: Callable[[Result[T]], None] | None) -> Iterator[Result[T]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        limit = self.in_flight or 8 * self.workers * chunksize
        chunks = _chunks(items, chunksize)
        ready: dict[int, Result[T]] = {}  # finished, waiting for an earlier item (ordered)
        held = 0  # items handed out and not yet returned to the caller
        following = 0  # the next index to return (ordered)
        exhausted = False
        try:
            while True:
                while not exhausted and (held < limit or not self._pending):
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                        break
                    self._pending[self._executor.submit(_run_chunk, fn, chunk[1])] = chunk
                    held += len(chunk[1])
                if not self._pending:
                    return
                done, _ = wait(list(self._pending), return_when=FIRST_COMPLETED)
                for future in done:
                    start, chunk = self._pending.pop(future)
                    for result in self._collect(future, start, chunk):
                        if progress is not None:
                            progress(result)
                        if ordered:
                            ready[result.index] = result
                        else:
                            held -= 1
                            yield result
                while following in ready:
                    held -= 1
                    following += 1
                    yield ready.pop(following - 1)
        except BaseException:
            self.terminate()
            raise

    def _collect(self, future: Any, start: int, chunk: list) -> list[Result]:
        """The results of a finished chunk; raises what must stop the pool."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            outcome = future.result()
        except BrokenProcessPool:
            raise WorkerDied(f"a worker process died (killed by the system, out of memory, or crashed) with items "
                             f"{start + 1}-{start + len(chunk)} (of those in work) not finished; rerun with fewer "
                             "workers, or with one to find the failing item") from None
        except Exception as err:  # noqa: BLE001 - a result that could not come back fails its chunk's items
            outcome = [(None, Failure.of(err))] * len(chunk)
        if isinstance(outcome, _InitializerFailed):
            if outcome.error is not None:
                raise outcome.error
            raise GnnffError(f"a worker process could not start: its initializer raised {outcome.failure}")
        return [Result(start + k, item, value, failure) for k, (item, (value, failure))
                in enumerate(zip(chunk, outcome))]
