"""Molecule files: their formats, their records and how one record is selected.

The readers of :mod:`gnnff.chem.molecule` (:func:`~gnnff.chem.molecule.read_records`,
:func:`~gnnff.chem.molecule.load_molecule`) stream a file through :func:`blocks_of`: one
unparsed :class:`Block` per record (SDF, MOL2, SMILES file), parsed only when needed, so
counting, titling (:func:`record_titles`) and selecting records (:func:`find_record`,
``FILE:N`` / ``FILE:NAME``: :func:`split_selector`) never parse the records they skip.
Public names are re-exported by :mod:`gnnff.chem.molecule`.
"""

from __future__ import annotations

import difflib
import gzip
import os
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from rdkit import Chem, rdBase

from gnnff.errors import InputError

__all__ = ["SUPPORTED_SUFFIXES", "Block", "Unparsable", "blocks_of", "count_records", "find_record", "parse_smiles",
           "record_titles", "selection_of", "split_selector", "suffix_of"]

#: File suffixes gnnff reads, and the reader for each.
SUPPORTED_SUFFIXES = (".sdf", ".sdf.gz", ".mol", ".mol2", ".smi", ".smiles")


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def split_selector(source: str | os.PathLike) -> tuple[str, int | str | None]:
    """Split ``FILE:N`` or ``FILE:NAME`` into the file and the record it selects: ``N``,
    a 1-based record number (as :attr:`~gnnff.chem.molecule.Record.index`), or ``NAME``,
    a record title (as :attr:`~gnnff.chem.molecule.Record.title`); None selects nothing
    (the whole file, or not a file at all).

    A string naming an existing file is that file, ``:`` and all. Otherwise it is split
    at its last ``:`` when the part before names a molecule file (an existing file, or
    one with a suffix of :data:`SUPPORTED_SUFFIXES`): neither a Windows drive
    (``C:\\lig.sdf``) nor a SMILES with atom maps (``[CH3:1]O``) is split. Digits after
    the ``:`` are a record number: a record titled with digits is picked by name with
    ``record=`` (``--name`` on the command line).
    """
    text = os.fspath(source)
    head, colon, tail = text.rpartition(":")
    if not colon or not head.strip() or not tail or _is_file(text):
        return text, None
    if not (_is_file(head) or suffix_of(Path(head)) in SUPPORTED_SUFFIXES):
        return text, None
    return head, int(tail) if tail.isascii() and tail.isdigit() else tail


class Block(NamedTuple):
    """One record of a file, not parsed yet."""

    title: str  #: the record's own name (``Record.title``), empty when it has none
    parse: Callable[[], Chem.Mol]  #: its molecule, unsanitized; raises Unparsable
    shown: str = ""  #: how its label names it, when not by its title (a SMILES line without a name)


def selection_of(path: str | os.PathLike, record: int | str | None) -> tuple[Path, int | str | None]:
    """The file of ``path`` and the record selected by its ``:N`` / ``:NAME`` suffix or by ``record``."""
    text = os.fspath(path)
    file, selected = split_selector(text)
    if record is not None and selected is not None and record != selected:
        raise InputError(f"{text}: selects record {selected!r}, and record=/--name selects {record!r}; "
                         "select the record once")
    return Path(file), selected if record is None else record


def blocks_of(path: Path) -> Iterator[Block]:
    """The records of ``path``, unparsed and streamed; InputError for a bad file or one without any."""
    blocks, lines = _open(path)
    count = 0
    with lines() as handle:
        for block in blocks(_checked(handle, path)):
            count += 1
            yield block
    if count == 0:
        raise InputError(f"{path}: no molecule found in the file; check that it holds {suffix_of(path)} records")


def count_records(path: str | os.PathLike, *, record: int | str | None = None) -> int:
    """Number of records :func:`~gnnff.chem.molecule.read_records` will yield, without
    parsing them (streamed).

    Raises the same :class:`InputError` as ``read_records`` for a bad file or selection.
    """
    path, record = selection_of(path, record)
    if record is not None:
        find_record(path, record)
        return 1
    return sum(1 for _ in blocks_of(path))


def record_titles(path: str | os.PathLike, *, record: int | str | None = None) -> list[str]:
    """The :attr:`~gnnff.chem.molecule.Record.title` of each record
    :func:`~gnnff.chem.molecule.read_records` will yield, in order, without parsing them
    (streamed); ``""`` for a record without a title.

    Raises the same :class:`InputError` as ``read_records`` for a bad file or selection.
    """
    path, record = selection_of(path, record)
    if record is not None:
        return [find_record(path, record)[1].title]
    return [block.title for block in blocks_of(path)]


def find_record(path: Path, record: int | str | None) -> tuple[int, Block]:
    """The 1-based number and unparsed record that ``record`` selects (None: the file's
    only record). Only the titles are kept while scanning: an InputError lists them."""
    titles: list[str] = []
    found: list[tuple[int, Block]] = []
    for index, block in enumerate(blocks_of(path), start=1):
        titles.append(block.title)
        if record is None:
            found += [(index, block)] if index == 1 else []
        elif index == record if isinstance(record, int) else block.title == record:
            found.append((index, block))
            if isinstance(record, int):
                return found[0]
    if len(found) == 1 and (record is not None or len(titles) == 1):
        return found[0]
    raise _selection_error(path, record, titles, [index for index, _ in found])


def _listing(titles: list[str], limit: int = 5) -> str:
    """``records: 1 'a', 2 'b', 3 (no name), ... (12 in all)``: the first few records."""
    def one(index: int, title: str) -> str:
        return f"{index} '{title if len(title) <= 40 else title[:37] + '...'}'" if title else f"{index} (no name)"

    shown = ", ".join(one(i, t) for i, t in enumerate(titles[:limit], start=1))
    return f"records: {shown}" + (f", ... ({len(titles)} in all)" if len(titles) > limit else "")


def _selection_error(path: Path, record: int | str | None, titles: list[str], matches: list[int]) -> InputError:
    """Why ``record`` selects no single record of ``path``, listing what there is."""
    n, listing = len(titles), _listing(titles)
    if record is None:
        named = next((t for t in titles if t and " " not in t), "")
        by_name = (f" or {path}:{named} (name; --name {named} on the command line, record='{named}' in Python)"
                   if named else " (record=2 in Python)")
        return InputError(
            f"{path}: holds {n} molecules and one is needed ({listing}); pick one as {path}:2 (record number)"
            f"{by_name}; or take all of them: gnnff parametrize FILE -o FOLDER, gnnff.assign_parameters_many")
    if isinstance(record, int):
        return InputError(f"{path}: no record {record}, the file holds {n} ({listing}); "
                          f"give a record number from 1 to {n} or a record name")
    if not matches:
        close = difflib.get_close_matches(record, sorted(set(titles)), n=3)
        maybe = f"closest: {', '.join(repr(t) for t in close)}; " if close else ""
        return InputError(f"{path}: no record named '{record}' ({maybe}{listing}); "
                          f"give a record name of the file or a record number from 1 to {n}")
    numbers = ", ".join(map(str, matches[:10])) + (", ..." if len(matches) > 10 else "")
    return InputError(f"{path}: {len(matches)} records are named '{record}' (records {numbers}); "
                      f"pick one by record number, e.g. {path}:{matches[0]}")


def _read_error(path: Path, suffix: str, err: BaseException) -> InputError:
    reason = getattr(err, "strerror", None) or str(err).strip().splitlines()[0]
    return InputError(f"{path}: cannot read file ({reason}); check that it is a complete, readable {suffix} file")


_READ_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)


def _lines(path: Path, suffix: str):
    """The file's text lines (universal newlines, undecodable bytes replaced), as a context manager."""
    if suffix == ".sdf.gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def _checked(handle: Any, path: Path) -> Iterator[str]:
    """The lines of ``handle``; a read error part way is an :class:`InputError` naming the file."""
    try:
        yield from handle
    except _READ_ERRORS as err:
        raise _read_error(path, suffix_of(path), err) from None


def _open(path: Path) -> tuple[Any, Any]:
    """Check a molecule file (its first 64 kB); return its record splitter and a callable
    opening its lines."""
    suffix = suffix_of(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{path}: unsupported format '{suffix or path.name}'; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a molecule file")
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    try:
        with _lines(path, suffix) as handle:
            head = handle.read(65536)
            while head and not head.strip():  # only blank so far: is there anything after?
                more = handle.read(65536)
                if not more:
                    break
                head = more
    except _READ_ERRORS as err:
        raise _read_error(path, suffix, err) from None
    if not head.strip():
        raise InputError(f"{path}: file is empty; it must hold at least one molecule")
    if "\x00" in head or _looks_binary(head):
        raise InputError(f"{path}: binary data, not a {suffix} text file; give a text molecule file")
    blocks = {".sdf": _sdf_blocks, ".sdf.gz": _sdf_blocks, ".mol": _sdf_blocks,
              ".mol2": _mol2_blocks, ".smi": _smiles_lines, ".smiles": _smiles_lines}[suffix]
    return blocks, lambda: _lines(path, suffix)


_TEXT_CONTROLS = frozenset("\t\n\r\f\v")


def _looks_binary(text: str) -> bool:
    """Whether more than 5 % of the first 64 kB are undecodable bytes or control characters."""
    head = text[:65536]
    odd = sum(1 for c in head if c == "\ufffd" or (c < " " and c not in _TEXT_CONTROLS))
    return odd > 0.05 * len(head)


class Unparsable(Exception):
    """A record the reader could not parse; the message says why."""


#: Atom symbols a V2000 atom block may hold: elements, isotopes D and T, and query atoms.
_MOLFILE_SYMBOLS = frozenset(
    [Chem.GetPeriodicTable().GetElementSymbol(z) for z in range(1, 119)] + ["D", "T", "*", "A", "Q", "L", "R", "R#", "LP"]
)


def _molblock_problem(block: str) -> str:
    """Why RDKit could not parse a V2000 molfile block, as far as we can tell (one line, with the fix)."""
    lines = block.rstrip("\n").split("\n")
    try:
        n_atoms, n_bonds = int(lines[3][:3]), int(lines[3][3:6])
    except (IndexError, ValueError):
        return "no valid molfile counts line (line 4), the record is not a V2000/V3000 molfile; export it again"
    atom_lines = lines[4:4 + n_atoms]
    if len(atom_lines) < n_atoms or any(len(line.rstrip()) < 34 for line in atom_lines) \
            or len(lines) < 4 + n_atoms + n_bonds:
        return (f"the record is truncated (its counts line announces {n_atoms} atoms and {n_bonds} bonds, "
                f"the record has {len(lines)} lines), the file is incomplete; export it again")
    for i, line in enumerate(atom_lines):
        symbol = line[31:34].strip()
        if symbol not in _MOLFILE_SYMBOLS:
            return f"atom {i} has unknown element '{symbol}'; fix the atom symbol"
    return "RDKit cannot parse the record; check its atom and bond blocks (atom indices, bond types, charges)"


def _sdf_blocks(lines: Iterator[str]) -> Iterator[Block]:
    """The records of SDF lines: each up to its ``$$$$`` line, or to the end of the file.
    A line that ends in ``$$$$`` also ends a record (a truncated record whose last line
    lost its newline), so the records after it are not swallowed."""
    def blocks() -> Iterator[str]:
        chunk: list[str] = []
        for line in lines:
            stripped = line.rstrip()
            if stripped.endswith("$$$$"):
                if stripped != "$$$$":
                    chunk.append(stripped[:-4] + "\n")
                yield "".join(chunk)
                chunk = []
            else:
                chunk.append(line)
        if "".join(chunk).strip():
            yield "".join(chunk) + ("" if not chunk or chunk[-1].endswith("\n") else "\n")

    for chunk in blocks():
        name = chunk.split("\n", 1)[0].strip()

        def parse(chunk=chunk):
            with rdBase.BlockLogs():
                supplier = Chem.SDMolSupplier()
                supplier.SetData(chunk + "$$$$\n", sanitize=False, removeHs=False)
                mol = next(iter(supplier), None)
            if mol is None:
                raise Unparsable(_molblock_problem(chunk))
            return mol

        yield Block(name, parse)


def _mol2_blocks(lines: Iterator[str]) -> Iterator[Block]:
    """The records of MOL2 lines: each from its ``@<TRIPOS>MOLECULE`` to the next."""
    marker = "@<TRIPOS>MOLECULE"

    def parts() -> Iterator[str]:
        part: list[str] | None = None  # text before the first marker is not a record
        for line in lines:
            if line.startswith(marker):
                if part is not None:
                    yield "".join(part)
                part = [line[len(marker):]]
            elif part is not None:
                part.append(line)
        if part is not None:
            yield "".join(part)

    for part in parts():
        name = part.strip("\n").split("\n")[0].strip()

        def parse(block=marker + part):
            with rdBase.BlockLogs():
                mol = Chem.MolFromMol2Block(block, sanitize=False, removeHs=False)
            if mol is None:
                raise Unparsable("RDKit cannot parse the MOL2 record; check its atom types and bonds")
            return mol

        yield Block(name, parse)


def _smiles_lines(lines: Iterator[str]) -> Iterator[Block]:
    """The records of a SMILES file: one a line, ``SMILES [NAME]``; ``#`` starts a comment.
    A line without a name is named (labelled, ``_Name``) by its SMILES but has no title."""
    for line in lines:
        fields = line.split(maxsplit=1)
        if not fields or fields[0].startswith("#"):
            continue
        smiles = fields[0]
        title = fields[1].strip() if len(fields) > 1 else ""
        yield Block(title, lambda smiles=smiles, title=title: parse_smiles(smiles, title or smiles, quote=bool(title)),
                     shown=title or smiles)


def parse_smiles(smiles: str, name: str, *, quote: bool) -> Chem.Mol:
    """The molecule of ``smiles``, named ``name``, unsanitized. ``quote``: whether an
    Unparsable message quotes the SMILES (False when the label already shows it)."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        what = f"RDKit cannot parse SMILES '{smiles}'" if quote else "RDKit cannot parse it as SMILES"
        raise Unparsable(f"{what}; check its syntax (brackets, ring-closure digits, element symbols)")
    mol.SetProp("_Name", name)
    return mol
