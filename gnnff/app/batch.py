"""Batch mode: the records of a molecule file in, one output file each, and a report.

:func:`plan` turns records and their output paths into :class:`Job` s (or, for a
record that could not be read or whose output already exists, directly into its
report :class:`Row`); :func:`run` parametrizes the jobs chunk by chunk, each chunk
through :func:`gnnff.api.assign_prepared` (one network call per batch for a
trained model), in this process or in worker processes, and yields the rows as
chunks finish; :func:`write_report` writes them as CSV and JSON.

Outputs are written atomically by the ``write`` callable, so an output that exists
is complete. Each output gets a provenance record beside it, ``.NAME.gnnff.json``
(:func:`provenance_path`), written after the output: the molecule it was made from
(SMILES and a SHA-256 of the atoms in input order and their coordinates), the model's
fingerprint, the format and the gnnff version. A second run skips an output (resume)
only when its record shows the same molecule and :class:`Work`; an output made from
other work, or without a record, fails its row (``--overwrite`` replaces it), so a
rerun never passes off an old file as the answer to a new question.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rdkit import Chem

from gnnff._version import __version__
from gnnff.api import Parametrized, assign_prepared
from gnnff.app.formats import output_files
from gnnff.chem.molecule import Record, net_charge
from gnnff.errors import GnnffError
from gnnff.files import atomic_write_text
from gnnff.pool import Failure, WorkerPool, worker_state
from gnnff.sources.models import ParameterSource

__all__ = ["REPORT_COLUMNS", "Job", "Row", "Work", "molecule_identity", "one_line", "plan", "provenance_path",
           "report_text", "run", "run_dask", "write_report"]

#: Writes one parametrized molecule to a path (atomically); must be picklable for workers.
Writer = Callable[[Parametrized, Path], Any]

#: Molecules handed to a worker at a time.
CHUNK = 32


@dataclass(frozen=True)
class Row:
    """One line of the report.

    Attributes
    ----------
    record
        1-based record number in the input.
    name
        The record's name (SD title, MOL2 name, SMILES file name column).
    status
        ``"ok"`` (written), ``"failed"`` or ``"skipped"`` (output already there).
    output
        The output file (written, or that would have been written).
    atoms, net_charge
        Atoms (hydrogens included) and net formal charge, when the record was read.
    error
        One-line reason for ``failed`` and ``skipped``, empty for ``ok``.
    """

    record: int
    name: str
    status: str
    output: str
    atoms: int | None
    net_charge: int | None
    error: str


#: Column order of ``report.csv``.
REPORT_COLUMNS = tuple(f.name for f in fields(Row))


@dataclass(frozen=True)
class Job:
    """One record to parametrize: its molecule as RDKit binary (properties kept), and
    its identity (:func:`molecule_identity`) for the provenance record."""

    record: int
    label: str
    name: str
    mol: bytes
    output: str
    smiles: str
    identity: str


@dataclass(frozen=True)
class Work:
    """How the outputs of a run are made, besides their molecules: what a rerun compares
    with an output's provenance record before it skips that output.

    Attributes
    ----------
    format
        Output format, a key of :data:`gnnff.app.formats.FORMATS`.
    model
        Name of the parameter source (for messages).
    model_fingerprint
        :func:`gnnff.openmm.model_fingerprint` of the source: the checkpoint's SHA-256
        for a trained model, else its name and options.
    version
        gnnff version.
    """

    format: str
    model: str
    model_fingerprint: str
    version: str = __version__


def provenance_path(output: str | os.PathLike) -> Path:
    """The provenance record of ``output``: ``.NAME.gnnff.json`` beside it (hidden)."""
    output = Path(output)
    return output.with_name(f".{output.name}.gnnff.json")


def molecule_identity(mol: Chem.Mol) -> tuple[str, str]:
    """Canonical SMILES of ``mol`` (for messages) and the SHA-256 of everything its
    outputs depend on: the atom-mapped SMILES (elements, charges, bonds, stereo and
    hydrogens, atoms in input order) and the coordinates of every conformer."""
    mapped = Chem.Mol(mol)
    for atom in mapped.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    digest = hashlib.sha256(Chem.MolToSmiles(mapped, isomericSmiles=True).encode())
    for conformer in mol.GetConformers():
        digest.update(conformer.GetPositions().astype("<f8").tobytes())
    try:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
    except Exception:  # noqa: BLE001 - the SMILES is only shown in messages
        smiles = Chem.MolToSmiles(mol)
    return smiles, digest.hexdigest()


def one_line(message: str) -> str:
    """``message`` with line breaks folded, so every error prints as one line."""
    return " ".join(str(message).split())


def _name(record: Record) -> str:
    if record.mol is not None and record.mol.HasProp("_Name"):
        name = record.mol.GetProp("_Name")
        return "" if name == record.label else name
    start = record.label.find(" ('")
    return record.label[start + 3:-2] if start >= 0 and record.label.endswith("')") else ""


def _short(smiles: object, limit: int = 60) -> str:
    text = str(smiles)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _other_work(path: Path, label: str, smiles: str, identity: str, work: Work) -> str | None:
    """Why the existing output ``path`` is not this record's under ``work``; None when it is."""
    sidecar = provenance_path(path)
    fix = "--overwrite replaces it, or choose another output (-o)"
    try:
        old = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return (f"{label}: {path} exists but has no provenance record {sidecar.name} (made by an older gnnff, "
                f"another program, or a run that stopped while writing it), so it may hold another molecule "
                f"or model; {fix}")
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        return f"{label}: {path} exists but its provenance record {sidecar.name} is unreadable; {fix}"
    differences = []
    if old.get("molecule_sha256") != identity:
        differences.append(f"molecule {_short(old.get('smiles'))}, not {_short(smiles)}"
                           if old.get("smiles") != smiles else "the same molecule in other coordinates or atom order")
    if old.get("model_fingerprint") != work.model_fingerprint:
        differences.append(f"model '{old.get('model')}', not '{work.model}'" if old.get("model") != work.model
                           else f"model '{work.model}' with other weights or options")
    if old.get("format") != work.format:
        differences.append(f"format {old.get('format')}, not {work.format}")
    if old.get("gnnff_version") != work.version:
        differences.append(f"gnnff {old.get('gnnff_version')}, not {work.version}")
    if not differences:
        return None
    return f"{label}: {path} exists but was made from other work ({'; '.join(differences)}); {fix}"


def plan(records: Iterable[Record], paths: Iterable[Path], *, overwrite: bool,
         work: Work) -> Iterator[Job | Row]:
    """A :class:`Job` for each record to do, or its final :class:`Row`: unreadable, output
    in the way (a folder, or a file made from other work or of unknown origin), or
    skipped (its outputs exist, made from the same molecule and ``work``)."""
    for record, path in zip(records, paths):
        if record.error is not None:
            yield Row(record.index, _name(record), "failed", str(path), None, None, one_line(str(record.error)))
            continue
        atoms, charge = record.mol.GetNumAtoms(), net_charge(record.mol)
        if path.is_dir():
            yield Row(record.index, _name(record), "failed", str(path), atoms, charge,
                      one_line(f"{record.label}: cannot write {path}: it is a folder; "
                               "remove it or choose another output (-o)"))
            continue
        smiles, identity = molecule_identity(record.mol)
        if path.is_file() and not overwrite:
            conflict = _other_work(path, record.label, smiles, identity, work)
            if conflict is not None:
                yield Row(record.index, _name(record), "failed", str(path), atoms, charge, one_line(conflict))
                continue
            if all(f.is_file() for f in output_files(path, work.format)):
                yield Row(record.index, _name(record), "skipped", str(path), atoms, charge,
                          "output exists, made from the same molecule, model, format and gnnff version; "
                          "--overwrite redoes it")
                continue
        yield Job(record.index, record.label, _name(record),
                  record.mol.ToBinary(Chem.PropertyPickleOptions.AllProps), str(path), smiles, identity)


def _do(jobs: Sequence[Job], model: Any, write: Writer, work: Work, batch_atoms: int,
        base: str = "") -> list[Row]:
    """Parametrize and write a chunk of jobs; every job gives one row. Outputs are written
    to ``base / job.output`` (``base``: the client's folder, for workers elsewhere); rows
    and messages name ``job.output`` as planned."""
    mols = [Chem.Mol(job.mol) for job in jobs]
    try:
        results = assign_prepared(mols, [job.label for job in jobs], model=model, batch_atoms=batch_atoms)
    except Exception as err:  # noqa: BLE001 - one bad molecule must cost one record, not the batch
        if len(jobs) > 1:
            return [row for job in jobs for row in _do([job], model, write, work, batch_atoms, base)]
        results = [err if isinstance(err, GnnffError) else GnnffError(
            f"{jobs[0].label}: internal error ({type(err).__name__}: {err}); "
            "please report it with this molecule as a gnnff bug")]
    return [_finish(job, mol, result, write, work, base) for job, mol, result in zip(jobs, mols, results)]


def _provenance(job: Job, work: Work, files: Sequence[Path]) -> str:
    """The provenance record of ``job``'s output, as JSON text."""
    document = {"gnnff_version": work.version, "format": work.format, "files": [f.name for f in files],
                "model": work.model, "model_fingerprint": work.model_fingerprint, "input": job.label,
                "smiles": job.smiles, "molecule_sha256": job.identity}
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def _write_with_provenance(result: Parametrized, job: Job, write: Writer, work: Work, base: str) -> None:
    """Write the output, then its provenance record; on failure leave neither (raises)."""
    path = Path(base, job.output)
    sidecar = provenance_path(path)
    files = output_files(path, work.format)
    sidecar.unlink(missing_ok=True)  # until the new output is complete, no record may vouch for the old one
    write(result, path)
    try:
        atomic_write_text(sidecar, _provenance(job, work, files))
    except BaseException:
        for file in files:
            file.unlink(missing_ok=True)
        raise


def _finish(job: Job, mol: Chem.Mol, result: Parametrized | GnnffError, write: Writer, work: Work,
            base: str = "") -> Row:
    atoms, charge = mol.GetNumAtoms(), net_charge(mol)
    if isinstance(result, GnnffError):
        return Row(job.record, job.name, "failed", job.output, atoms, charge, one_line(str(result)))
    path = Path(job.output)
    try:
        _write_with_provenance(result, job, write, work, base)
    except GnnffError as err:
        return Row(job.record, job.name, "failed", job.output, atoms, charge, one_line(str(err)))
    except OSError as err:
        reason = err.strerror or type(err).__name__
        return Row(job.record, job.name, "failed", job.output, atoms, charge,
                   one_line(f"{job.label}: cannot write {path} ({reason}); choose a writable output (-o)"))
    return Row(job.record, job.name, "ok", job.output, result.topology.n_atoms, result.topology.net_charge, "")


def _chunks(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    chunk: list[Job] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _init_worker(model: str | ParameterSource | None, options: dict[str, Any], write: Writer, work: Work,
                 batch_atoms: int) -> dict[str, Any]:
    """What every chunk of a run needs, made once per worker (the pool's state): the model loaded."""
    from gnnff.sources.models import get_model

    source = model if isinstance(model, ParameterSource) else get_model(model, **options)
    return {"source": source, "write": write, "work": work, "batch_atoms": batch_atoms}


def _work(jobs: list[Job]) -> list[Row]:
    state = worker_state()
    return _do(jobs, state["source"], state["write"], state["work"], state["batch_atoms"])


def _broken(jobs: Sequence[Job], failure: Failure) -> list[Row]:
    """Rows of a chunk whose work raised outside :func:`_do`'s own handling."""
    return [Row(job.record, job.name, "failed", job.output, None, None,
                one_line(f"{job.label}: internal error ({failure}); please report it with this molecule "
                         "as a gnnff bug")) for job in jobs]


def run(jobs: Iterable[Job], *, model: str | ParameterSource | None, model_options: dict[str, Any],
        write: Writer, work: Work, workers: int = 1, batch_atoms: int | None = None,
        chunk: int = CHUNK) -> Iterator[list[Row]]:
    """Parametrize ``jobs`` and write their outputs; yield the rows of each finished chunk.

    Parameters
    ----------
    model, model_options
        The parameter source, as for :func:`gnnff.get_model`; with several workers a
        name or path (each worker loads it), with one also a ParameterSource.
    write
        ``write(result, path)``: writes one output atomically.
    work
        Format, model fingerprint and version, recorded in each output's provenance
        record (written after the output).
    workers
        Processes (:class:`gnnff.pool.WorkerPool`); 1 works in this process. Workers use
        one thread each.
    batch_atoms
        Atoms per network call (default :data:`gnnff.api.BATCH_ATOMS`).
    """
    from gnnff.api import BATCH_ATOMS
    from gnnff.sources.models import get_model

    batch_atoms = BATCH_ATOMS if batch_atoms is None else batch_atoms
    if workers > 1:
        if model is not None and not isinstance(model, str):
            raise ValueError("worker processes need the model as a name or path, not an object")
        get_model(model, **model_options)  # a bad model fails here, once, not in every worker
    with WorkerPool(workers, initializer=_init_worker,
                    initargs=(model, model_options, write, work, batch_atoms)) as pool:
        for result in pool.imap(_work, _chunks(jobs, chunk)):
            yield result.value if result.ok else _broken(result.item, result.failure)


# Parameter sources loaded in a dask worker process, by (model, options): loaded by the
# first chunk a worker gets, then reused by every later one (never pickled per task).
_SOURCES: dict[tuple[str | None, tuple[tuple[str, Any], ...]], ParameterSource] = {}


def _dask_chunk(jobs: list[Job], model: str | None, options: tuple[tuple[str, Any], ...], write: Writer,
                work: Work, batch_atoms: int, base: str) -> list[Row]:
    """One chunk in a dask worker: :func:`_do` with this worker's copy of the model."""
    key = (model, options)
    if key not in _SOURCES:
        import torch

        from gnnff.sources.models import get_model

        torch.set_num_threads(1)  # the worker's processes share the cores, as in run()
        _SOURCES[key] = get_model(model, **dict(options))
    return _do(jobs, _SOURCES[key], write, work, batch_atoms, base)


def dask_setup(worker: Any) -> None:
    """distributed's preload hook, run by workers started with ``preload=["gnnff.app.batch"]``:
    they ignore Ctrl-C, which is the client's (it cancels the chunks in flight and reports),
    as :func:`run`'s worker processes do."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _crashed(jobs: Sequence[Job], err: BaseException) -> list[Row]:
    """Rows of a single job whose dask task failed outside gnnff (its worker died)."""
    return [Row(job.record, job.name, "failed", job.output, None, None,
                one_line(f"{job.label}: the dask task failed ({type(err).__name__}: {err}); the worker may have "
                         "run out of memory or crashed on this molecule; a rerun retries it"))
            for job in jobs]


def run_dask(jobs: Iterable[Job], *, client: Any, model: str | None, model_options: dict[str, Any],
             write: Writer, work: Work, batch_atoms: int | None = None, chunk: int = CHUNK,
             in_flight: int | None = None) -> Iterator[list[Row]]:
    """:func:`run` on a dask.distributed cluster: yield the rows of each chunk as it finishes.

    The chunks and the per-chunk work are :func:`run`'s, so the outputs, rows and messages
    are the same. Workers write the outputs themselves, so they must see the client's
    files (a shared filesystem); relative outputs are resolved against this process's
    folder. ``jobs`` is read lazily: at most ``in_flight`` chunks (default two per worker
    thread) are submitted and not yet collected, so a library of millions of records is
    never held in memory. A chunk whose task fails outside gnnff (a worker died) is
    retried one job per task; a job that fails again gets a failed row. Closing the
    iterator (an interrupt) cancels the chunks not yet collected.

    Parameters
    ----------
    client
        A connected ``distributed.Client``.
    model
        The parameter source's name or path (each worker loads it once).
    in_flight
        Chunks submitted at a time.
    """
    from distributed import as_completed

    from gnnff.api import BATCH_ATOMS

    batch_atoms = BATCH_ATOMS if batch_atoms is None else batch_atoms
    in_flight = in_flight or max(2, 2 * sum(client.nthreads().values()))
    options = tuple(sorted(model_options.items()))
    base = os.getcwd()

    submitted: dict[str, tuple[Any, list[Job]]] = {}  # by key: the future and its jobs, until collected

    def submit(part: list[Job]) -> Any:
        future = client.submit(_dask_chunk, part, model, options, write, work, batch_atoms, base, pure=False)
        submitted[future.key] = (future, part)
        return future

    chunks = _chunks(jobs, chunk)
    pending = as_completed([submit(part) for part in itertools.islice(chunks, in_flight)])
    try:
        for future in pending:
            _, part = submitted.pop(future.key)
            try:
                rows = future.result()
            except Exception as err:  # noqa: BLE001 - a dead worker costs its chunk's molecules one retry each
                if len(part) > 1:
                    pending.update([submit([job]) for job in part])
                    continue
                rows = _crashed(part, err)
            finally:
                future.release()
            pending.update([submit(part) for part in itertools.islice(chunks, max(0, in_flight - len(submitted)))])
            yield rows
    finally:
        client.cancel([future for future, _ in submitted.values()])


def report_text(rows: Sequence[Row]) -> tuple[str, str]:
    """The report as CSV text and as JSON text (rows in record order, with a summary)."""
    rows = sorted(rows, key=lambda row: row.record)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow(["" if value is None else value for value in (getattr(row, c) for c in REPORT_COLUMNS)])
    counts = {status: sum(row.status == status for row in rows) for status in ("ok", "failed", "skipped")}
    document = {"summary": {"records": len(rows), **counts}, "records": [asdict(row) for row in rows]}
    return buffer.getvalue(), json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def write_report(rows: Sequence[Row], stem: Path) -> tuple[Path, Path]:
    """Write ``STEM.csv`` and ``STEM.json`` atomically; return their paths."""
    text_csv, text_json = report_text(rows)
    csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
    return atomic_write_text(csv_path, text_csv), atomic_write_text(json_path, text_json)
