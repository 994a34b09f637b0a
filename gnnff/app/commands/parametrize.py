"""``gnnff parametrize``: System XML (or ffxml, Amber, GROMACS files) for each molecule of
the input, with a report, resume and worker processes or a dask cluster.

Worker processes and dask workers write the outputs with
:func:`gnnff.app.formats.write_parametrized`, importable by that name from any process.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

from gnnff.app import workers as machine
from gnnff.app.commands._common import Listed, charge_methods, name_option, records
from gnnff.app.formats import FORMATS
from gnnff.errors import InputError

__all__ = ["add_arguments", "handle"]

#: The charge method of ``--model sage`` without ``--charges`` (``SageSource``'s default;
#: not read from it here, as that imports torch).
SAGE_CHARGES = "am1bcc"


def add_arguments(subparsers) -> None:
    """Add ``parametrize`` to ``subparsers``."""
    p = subparsers.add_parser(
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
                   help="SDF (.sdf, .sdf.gz, .mol), MOL2 or SMILES (.smi) file, or a SMILES string; "
                        "FILE:N or FILE:NAME: only record N (1-based) or the record titled NAME")
    name_option(p)
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output file (one molecule; .xml, .ffxml, .prmtop or .top, none: --format's), "
                        "folder or file pattern (several: a file per record, named after its title, else its "
                        "number); default: INPUT's stem (a file for one molecule, a folder for several), or for "
                        "a SMILES string a name made from it")
    p.add_argument("--model", metavar="NAME_OR_PATH", default=None,
                   help="parameter source (default: the package default); `gnnff models` lists them")
    p.add_argument("--charges", metavar="METHOD", default=None, action=Listed, names=charge_methods,
                   marked=SAGE_CHARGES, help="charge method of the classical models (--model sage, whose "
                                             "default is marked, or sage-2.3, whose default is nagl): {}")
    p.add_argument("--format", choices=tuple(FORMATS), default=None,
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
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Parametrize and write every record; 0 if all were written or skipped, else 1."""
    options = {"charges": args.charges} if args.charges else {}
    if options and args.model is None:
        raise InputError("--charges applies to the classical models: add --model sage or --model sage-2.3")
    requested = machine.requested_workers(args.workers or "auto")
    local = machine.dask_option(args.dask, args.workers)  # before any file is read: a bad --dask is exit 2
    stem, titles, inputs = records(args.input, args.name)  # a bad input file fails before the model loads
    count = len(titles)
    paths, report, fmt = _output_paths(stem, args.output, titles, args.format)  # so does a bad -o
    from tqdm import tqdm

    from gnnff.app.batch import Row, Work, plan, run, run_dask  # torch and the network: after the cheap checks
    from gnnff.app.formats import write_parametrized
    from gnnff.openmm import model_fingerprint
    from gnnff.progress import progress
    from gnnff.sources.models import get_model

    model = get_model(args.model, **options)
    work = Work(format=fmt, model=model.name, model_fingerprint=model_fingerprint(model))
    _prepare_output(paths[0], report)
    say = (lambda line: None) if args.quiet else (lambda line: tqdm.write(line, file=sys.stdout))
    rows: list[Row] = []
    start = time.perf_counter()
    # no lines without a terminal: each record gets its own line already
    bar = progress(total=count, unit="mol", desc="parametrize", file=sys.stderr, disable=None if count > 1 else True)
    record = _recorder(rows, bar, say, model.name)

    def jobs():
        for item in plan(inputs, paths, overwrite=args.overwrite, work=work):
            if isinstance(item, Row):
                record([item])
            else:
                yield item

    write = functools.partial(write_parametrized, fmt=fmt)  # by its module's name, so workers can import it
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


def _output_paths(stem: str, output: str | None, titles: list[str],
                  fmt: str | None = None) -> tuple[list[Path], Path | None, str]:
    """Output path of record 1, 2, ... (``titles``: their titles), the report's path stem
    (None for one output file) and the output format (``fmt``, else the suffix's, else xml).

    One record goes to ``output`` (default ``STEM`` + the format's suffix); an output
    without a suffix gets the format's (``-o lig --format amber``: ``lig.prmtop`` +
    ``lig.inpcrd``) and an unknown suffix is an InputError
    (:func:`gnnff.app.formats.resolve_output`). Several records, or an ``output`` that is
    an existing folder or ends with ``/``, go to a folder, a file per record named after
    its title, else its number (:func:`gnnff.app.formats.output_stems`: ``FOLDER/aspirin.xml``,
    ``FOLDER/0002.xml`` ..., report ``FOLDER/report.csv``; default folder ``STEM``), or to
    files named from a file name (``lig.xml`` -> ``lig-aspirin.xml`` ..., report
    ``lig-report.csv``).
    """
    from gnnff.app.formats import output_stems, resolve_output

    count = len(titles)
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
        return [target / f"{name}{FORMATS[fmt][0]}" for name in output_stems(titles)], target / "report", fmt
    main, fmt = resolve_output(output, fmt)
    if count == 1:
        return [main], None, fmt
    paths = [main.with_name(f"{main.stem}-{name}{main.suffix}") for name in output_stems(titles)]
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
