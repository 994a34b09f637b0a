"""The worker pool (:mod:`gnnff.pool`): ordered and as-completed results, per-item failures
that leave the other items alone, one initializer call per worker, the in-process mode
equal to the pool, and Ctrl-C (here or in a worker) leaving no process behind.

The worker functions live at module level, so spawned workers import them from here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gnnff.errors import ChemistryError, GnnffError
from gnnff.pool import Failure, Result, WorkerDied, WorkerPool, worker_state


def _start(folder: str, tag: str, gate: str | None = None) -> dict:
    """Initializer: one file per call, named by the process, so the test can count the calls."""
    Path(folder, f"init-{os.getpid()}-{time.monotonic_ns()}").write_text(tag)
    return {"tag": tag, "gate": gate}


def _square(x: int) -> tuple[int, int, str, str]:
    """x squared, the worker's process id and state, and its OpenMP thread setting; x 3 and
    x 5 fail (a gnnff error and an unexpected one). With a gate (a file), x 0 waits for x 7
    to open it: x 0 finishes last, though it is first."""
    state = worker_state() or {}
    if x == 0 and state.get("gate"):
        deadline = time.monotonic() + 120
        while not Path(state["gate"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    if x == 3:
        raise ChemistryError("molecule 3: boron is outside the model; leave it out")
    if x == 5:
        raise KeyError(x)
    if x == 7 and state.get("gate"):
        Path(state["gate"]).write_text("open")
    return x * x, os.getpid(), state.get("tag", ""), os.environ.get("OMP_NUM_THREADS", "")


def _interrupt(x: int) -> int:
    if x == 2:
        raise KeyboardInterrupt
    time.sleep(0.2 if x < 2 else 30)
    return x


def _die(x: int) -> int:
    if x == 1:
        os._exit(9)  # as the system's OOM killer would end it: no exception, no result
    time.sleep(0.2)
    return x


def _refuse(tag: str) -> None:
    raise ChemistryError(f"{tag}: the model cannot be loaded; pass a checkpoint file")


def _values(results: list[Result]) -> list:
    return [r.value[0] if r.ok else str(r.failure) for r in results]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


EXPECTED = [0, 1, 4, "molecule 3: boron is outside the model; leave it out", 16, "KeyError: 5", 36, 49]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_results_in_order_failures_per_item_and_one_initializer_call_per_worker(tmp_path, chunksize):
    seen = []
    with WorkerPool(2, initializer=_start, initargs=(str(tmp_path), "loaded", str(tmp_path / "gate"))) as pool:
        results = list(pool.imap(_square, range(8), chunksize=chunksize, progress=seen.append))
    assert [r.index for r in results] == list(range(8))
    assert [r.item for r in results] == list(range(8))
    assert _values(results) == EXPECTED
    assert results[3].failure == Failure("ChemistryError", "molecule 3: boron is outside the model; leave it out",
                                         gnnff=True)
    assert results[5].failure == Failure("KeyError", "5", gnnff=False) and not results[5].ok
    assert sorted(r.index for r in seen) == list(range(8))  # progress: every item, as its chunk finished:
    assert [r.index for r in seen[-chunksize:]] == list(range(chunksize))  # item 0 waited for item 7
    pids = {r.value[1] for r in results if r.ok}
    assert len(pids) == 2 and os.getpid() not in pids  # item 0 held one worker, the other did the rest
    calls = [p.name.split("-")[1] for p in tmp_path.glob("init-*")]
    assert sorted(calls) == sorted(str(pid) for pid in pids)  # one initializer call per worker
    assert {r.value[2] for r in results if r.ok} == {"loaded"}  # the initializer's value, in every worker
    assert {r.value[3] for r in results if r.ok} == {"1"}  # one thread per worker
    assert multiprocessing.active_children() == []


def test_as_completed_results_carry_their_index(tmp_path):
    with WorkerPool(2, initializer=_start, initargs=(str(tmp_path), "loaded", str(tmp_path / "gate"))) as pool:
        results = list(pool.imap(_square, range(8), ordered=False))
    assert sorted(r.index for r in results) == list(range(8))
    assert results[-1].index == 0  # it waited for item 7
    assert _values(sorted(results, key=lambda r: r.index)) == EXPECTED


@pytest.mark.parametrize("workers", [0, 1])
def test_in_process_mode_gives_the_pools_results(tmp_path, workers):
    before = (os.environ.get("OMP_NUM_THREADS"), len(multiprocessing.active_children()))
    seen = []
    with WorkerPool(workers, initializer=_start, initargs=(str(tmp_path), "here")) as pool:
        results = list(pool.imap(_square, range(8), progress=seen.append))
    assert _values(results) == EXPECTED
    assert [r.failure for r in results] == [None, None, None, Failure("ChemistryError", EXPECTED[3], True),
                                            None, Failure("KeyError", "5", False), None, None]
    assert {r.value[1] for r in results if r.ok} == {os.getpid()}  # no process started
    assert {r.value[2] for r in results if r.ok} == {"here"} and len(list(tmp_path.glob("init-*"))) == 1
    assert [r.index for r in seen] == list(range(8))
    assert (os.environ.get("OMP_NUM_THREADS"), len(multiprocessing.active_children())) == before
    assert worker_state() is None  # the state belongs to the pool's items, not to this process


def test_a_worker_initializer_error_is_raised_here():
    with pytest.raises(ChemistryError, match="cannot-load: the model cannot be loaded; pass a checkpoint file"):
        with WorkerPool(2, initializer=_refuse, initargs=("cannot-load",)) as pool:
            list(pool.imap(_square, range(4)))
    assert multiprocessing.active_children() == []


def test_a_keyboard_interrupt_in_a_worker_is_raised_here_and_stops_every_worker():
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with WorkerPool(2) as pool:
            list(pool.imap(_interrupt, range(6)))
    assert multiprocessing.active_children() == []
    assert time.perf_counter() - start < 25  # the worker asleep on item 3 (30 s) was not waited for


def test_a_worker_that_dies_is_reported_and_its_siblings_are_stopped():
    start = time.perf_counter()
    died = (r"a worker process died \(killed by the system, out of memory, or crashed\) with items \d+-\d+ "
            r"\(of those in work\) not finished; rerun with fewer workers")
    with pytest.raises(WorkerDied, match=died):
        with WorkerPool(2) as pool:
            list(pool.imap(_die, range(6)))
    assert isinstance(WorkerDied("x"), GnnffError)
    assert multiprocessing.active_children() == [] and time.perf_counter() - start < 60


def test_items_are_read_lazily():
    """At most ``in_flight`` items are handed out before the first result comes back, so a
    library of millions of records is never held in memory."""
    pulled = []

    def items():
        for x in range(40):
            pulled.append(x)
            yield x

    with WorkerPool(2, in_flight=4) as pool:
        results = pool.imap(_square, items(), chunksize=2)
        assert next(results).index == 0 and len(pulled) == 4  # two chunks of two
        assert [r.index for r in results] == list(range(1, 40)) and len(pulled) == 40


def test_closing_the_results_early_stops_the_workers():
    with WorkerPool(2) as pool:
        results = pool.imap(_interrupt, [0, 1, 3, 4, 5])
        assert next(results).value == 0
        results.close()
        assert multiprocessing.active_children() == []
    with pytest.raises(RuntimeError, match="inside its 'with' block"):
        pool.imap(_square, [1])


PARENT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from test_pool import WorkerPool, _nap

    if __name__ == "__main__":
        folder = sys.argv[1]
        with WorkerPool(2) as pool:
            for result in pool.imap(_nap, [os.path.join(folder, name) for name in "abcd"]):
                pass
""")


def _nap(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def test_ctrl_c_in_the_parent_terminates_the_workers_at_once(tmp_path):
    """The parent (a script in its own process) gets SIGINT while its two workers sleep:
    it raises KeyboardInterrupt within seconds, and neither worker outlives it."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, stderr=subprocess.PIPE,
                              text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / name).is_file() and (tmp_path / name).read_text() for name in "ab"):
            assert parent.poll() is None and time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        workers = [int((tmp_path / name).read_text()) for name in "ab"]
        assert all(_alive(pid) for pid in workers)
        start = time.monotonic()
        parent.send_signal(signal.SIGINT)
        _, err = parent.communicate(timeout=60)
        assert time.monotonic() - start < 30  # not the 120 s the items sleep
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode != 0 and "KeyboardInterrupt" in err
    assert not any(_alive(pid) for pid in workers), "a worker outlived the interrupted parent"
