"""``gnnff parametrize --dask``: the same outputs, report, resume and errors as one process.

One LocalCluster of two single-threaded worker processes serves the module. The library
holds an unreadable record, elements the default model lacks (U, B), a duplicate and a
salt; on dask it must give byte-identical files and the same report rows as the
single-process run, and an interrupted run must resume without redoing or losing a
finished record.
"""

from __future__ import annotations

import csv
import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gnnff
from gnnff.app.batch import Row, Work, plan, provenance_path, run, run_dask
from gnnff.app.cli import main
from gnnff.app.formats import output_stems, write_parametrized
from gnnff.chem.molecule import count_records, read_records, record_titles
from gnnff.openmm import model_fingerprint

try:
    import distributed
except ImportError:
    distributed = None

needs_dask = pytest.mark.skipif(distributed is None, reason="dask.distributed not installed (pip install 'gnnff[dask]')")

LIBRARY = """\
CCO ethanol
C1CC broken
[U] uranium
OB(O)c1ccccc1 phenylboronic-acid
CCO ethanol-again
c1ccccc1O phenol
CC(=O)[O-] acetate
CC(=O)Nc1ccc(O)cc1 paracetamol
C[NH3+].[Cl-] methylammonium-chloride
CCOC(=O)C ethyl-acetate
c1ccncc1 pyridine
CS(=O)(=O)N methanesulfonamide
FC(F)(F)c1ccccc1 benzotrifluoride
"""
STATUSES = ["ok", "failed", "failed", "failed", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every output and provenance record under ``folder`` (not the report) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith("report")}


NUMBER = re.compile(rb"-?\d*\.?\d+(?:[eE][-+]?\d+)?")


def _numbers(text: bytes) -> list[float]:
    return [float(x) for x in NUMBER.findall(text)]


def report(folder: Path) -> list[tuple[str, ...]]:
    """The report's rows, without the output column (its folder differs between runs)."""
    with (folder / "report.csv").open(encoding="utf-8") as handle:
        return [tuple(v for k, v in row.items() if k != "output") for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """The library, and beside it ``serial/``: the single-process run's outputs."""
    folder = tmp_path_factory.mktemp("library")
    (folder / "lib.smi").write_text(LIBRARY)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["parametrize", "lib.smi", "-o", "serial/", "-q"]) == 1
    finally:
        os.chdir(cwd)
    assert [row[2] for row in report(folder / "serial")] == STATUSES
    return folder


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def work() -> Work:
    model = gnnff.get_model()
    return Work(format="xml", model=model.name, model_fingerprint=model_fingerprint(model))


def _plan(folder: Path, output: str, work: Work) -> tuple[list[Row], list]:
    records = list(read_records(folder / "lib.smi"))
    paths = [Path(output) / f"{stem}.xml" for stem in output_stems([r.title for r in records])]
    rows, jobs = [], []
    for item in plan(records, paths, overwrite=False, work=work):
        (rows if isinstance(item, Row) else jobs).append(item)
    return rows, jobs


def _tasks(dask_worker) -> int:
    # every task the worker knows: a cancelled task still running in a worker thread stays
    # known (state ``cancelled``) until its thread returns
    return len(dask_worker.state.tasks)


def _idle(client, quiet: float = 1.0) -> None:
    """Wait until no task has run on the cluster for ``quiet`` seconds: a cancelled chunk
    still finishes its writes in its worker thread, after the scheduler has stopped listing
    it as processing, and a chunk whose compute message was on its way to the worker when
    it was cancelled starts only after that message arrives (one idle look is not enough:
    CI saw such a chunk write two outputs after it)."""
    deadline, idle_since = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        busy = any(client.processing().values()) or any(client.run(_tasks).values())
        now = time.monotonic()
        idle_since = None if busy else (idle_since or now)
        if idle_since is not None and now - idle_since >= quiet:
            return
        time.sleep(0.05)


@needs_dask
def test_dask_rows_and_files_equal_one_process(library, client, work, monkeypatch):
    monkeypatch.chdir(library)
    (library / "direct").mkdir()
    write = functools.partial(write_parametrized, fmt="xml")
    rows, jobs = _plan(library, "direct", work)
    for done in run_dask(jobs, client=client, model=None, model_options={}, write=write, work=work, chunk=2,
                         in_flight=2):  # six chunks over two workers, two in flight
        rows += done
    serial_rows, serial_jobs = _plan(library, "direct-serial", work)
    (library / "direct-serial").mkdir()
    for done in run(serial_jobs, model=None, model_options={}, write=write, work=work, chunk=2):
        serial_rows += done
    assert sorted(rows, key=lambda r: r.record) == [
        Row(r.record, r.name, r.status, r.output.replace("direct-serial", "direct"), r.atoms, r.net_charge,
            r.error) for r in sorted(serial_rows, key=lambda r: r.record)]
    # the same chunks as one process (the network's float32 sums depend on which molecules
    # share a batch, in the last digits, so the comparison is at equal chunk size)
    assert snapshot(library / "direct") == snapshot(library / "direct-serial")


@needs_dask
def test_cli_on_a_scheduler_address_writes_the_same_report(library, client, monkeypatch, capsys):
    monkeypatch.chdir(library)  # the workers' folder is another: outputs go under this one
    assert main(["parametrize", "lib.smi", "-o", "address/", "-q", "--dask", client.scheduler.address]) == 1
    assert report(library / "address") == report(library / "serial")
    assert snapshot(library / "address") == snapshot(library / "serial")
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(line.startswith("gnnff: error: lib.smi record ") for line in errors)


@needs_dask
def test_interrupted_run_resumes_without_redoing_or_losing(library, client, work, monkeypatch):
    monkeypatch.chdir(library)
    (library / "stopped").mkdir()
    _, jobs = _plan(library, "stopped", work)
    batches = run_dask(jobs, client=client, model=None, model_options={}, write=write_parametrized, work=work,
                       chunk=2, in_flight=2)
    next(batches)
    batches.close()  # as an interrupt does: the chunks not yet collected are cancelled
    _idle(client)
    finished = {p: p.stat().st_mtime_ns for p in (library / "stopped").glob("*.xml")}
    assert 2 <= len(finished) < 10
    assert all(provenance_path(p).is_file() for p in finished)

    assert main(["parametrize", "lib.smi", "-o", "stopped/", "-q", "--dask", client.scheduler.address]) == 1
    rows = report(library / "stopped")
    stems = output_stems(record_titles(library / "lib.smi"))
    done = {f"{stems[int(row[0]) - 1]}.xml" for row in rows if row[2] == "skipped"}
    assert done == {p.name for p in finished}  # each finished record skipped, none redone
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert [("ok" if row[2] == "skipped" else row[2]) for row in rows] == STATUSES
    resumed, serial = snapshot(library / "stopped"), snapshot(library / "serial")
    assert resumed.keys() == serial.keys()  # nothing lost
    for name in serial:  # other batches than the serial run's: the same to the network's float32 rounding
        assert _numbers(resumed[name]) == pytest.approx(_numbers(serial[name]), rel=1e-5, abs=1e-6), name
        assert NUMBER.sub(b"", resumed[name]) == NUMBER.sub(b"", serial[name]), name
    assert not list(library.rglob("*.tmp"))


@needs_dask
def test_cli_local_cluster_in_a_subprocess(library):
    result = subprocess.run([sys.executable, "-m", "gnnff", "parametrize", "lib.smi", "-o", "local/",
                             "--dask", "local:2"], cwd=library, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 1, result.stderr
    assert report(library / "local") == report(library / "serial")
    assert snapshot(library / "local") == snapshot(library / "serial")
    assert "parametrized 10 of 13 molecule(s)" in result.stdout and "3 failed" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip() and "parametrize:" not in line]
    assert all(line.startswith("gnnff: error: lib.smi record ") for line in lines), result.stderr


def test_without_dask_the_option_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert main(["parametrize", "CCO", "--dask", "local"]) == 2
    err = capsys.readouterr().err
    assert err == ("gnnff: error: --dask needs dask.distributed, which is not installed: "
                   "pip install 'gnnff[dask]'\n")
    assert not list(tmp_path.iterdir())


@needs_dask
@pytest.mark.parametrize("args, message", [
    (["--dask", "local", "--workers", "2"], "--workers and --dask exclude each other"),
    (["--dask", "local:0"], "--dask local:N needs a number of workers of at least 1, not '0'"),
    (["--dask", "local:two"], "not 'two'"),
])
def test_bad_dask_options_are_one_line_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["parametrize", "CCO", "-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gnnff: error: ") and message in err
    assert not list(tmp_path.iterdir())


@needs_dask
def test_unreachable_scheduler_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    def refuse(address, **options):
        raise OSError(f"Timed out trying to connect to {address} after 20 s")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(distributed, "Client", refuse)  # as a scheduler that is not there answers, at once
    assert main(["parametrize", "CCO", "-q", "--dask", "tcp://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == (
        "gnnff: error: --dask tcp://127.0.0.1:1: cannot connect to a dask scheduler (Timed out trying to "
        "connect to tcp://127.0.0.1:1 after 20 s); start one (dask scheduler) and its workers, or use "
        "--dask local\n")
    assert not list(tmp_path.glob("*.xml"))


# Library-scale input: the reader streams the file, one record's text at a time.

def test_reading_a_library_streams_it(tmp_path):
    import tracemalloc

    path = tmp_path / "big.smi"
    path.write_text("".join(f"c1ccccc1{'C' * (i % 7)} mol-{i}\n" for i in range(200_000)))  # 4 MB
    tracemalloc.start()
    try:
        assert count_records(path) == 200_000
        first = next(read_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.label == "big.smi record 1 ('mol-0')" and first.mol is not None
    assert peak < path.stat().st_size / 4, f"peak {peak} bytes: the file was read whole"


def test_streamed_sdf_records_are_rdkits(tmp_path):
    from rdkit import Chem

    blocks = [Chem.MolToMolBlock(Chem.AddHs(Chem.MolFromSmiles(s))) for s in ("CCO", "c1ccccc1", "CC(=O)[O-]")]
    text = f"{blocks[0]}$$$$\r\n{blocks[1]}$$$$\n$$$$\n{blocks[2]}"  # CRLF, an empty record, no final $$$$
    (tmp_path / "mixed.sdf").write_bytes(text.encode())
    records = list(read_records(tmp_path / "mixed.sdf"))
    assert count_records(tmp_path / "mixed.sdf") == len(records) == 4
    assert [Chem.MolToSmiles(Chem.RemoveHs(r.mol)) for r in records if r.mol is not None] == \
        ["CCO", "c1ccccc1", "CC(=O)[O-]"]
    assert records[2].error is not None and "mixed.sdf record 3" in str(records[2].error)


def test_a_truncated_gzip_library_is_a_one_line_error(tmp_path):
    import gzip

    from gnnff.errors import InputError

    whole = gzip.compress(("".join(f"CCO{'C' * (i % 9)}\n" for i in range(20_000))).encode())
    (tmp_path / "cut.sdf.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.sdf\.gz: cannot read file \(.*\); check that it is a complete"):
        count_records(tmp_path / "cut.sdf.gz")
