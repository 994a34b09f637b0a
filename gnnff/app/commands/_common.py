"""What several subcommands share: reading the input, names made from it, and options
whose help lists a registry's names."""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gnnff.errors import GnnffError, InputError

__all__ = ["Listed", "charge_methods", "input_stem", "labelers", "name_option", "records", "selected", "slug"]


def records(source: str, name: str | None = None) -> tuple[str, list[str], Iterator]:
    """The input's stem, the title of each of its records (:attr:`gnnff.chem.molecule.Record.title`,
    read without parsing; one ``""`` for a SMILES string) and the records (read lazily).

    ``INPUT:N``, ``INPUT:NAME`` or ``name`` (``--name``) read one record of a file; the stem
    then ends with it (``ligands-3``, ``ligands-lig_1``).
    """
    from gnnff.chem.molecule import Record, load_molecule, looks_like_path, read_records, record_titles, smiles_label

    if not source.strip():
        raise InputError("empty input: give a molecule file or a SMILES string")
    if looks_like_path(source):
        titles = record_titles(source, record=name)
        return _stem(source, name, lambda path: path.stem.removesuffix(".sdf")), titles, \
            read_records(source, record=name)
    _no_selection(source, name)
    label = smiles_label(source)
    try:
        record = Record(1, label, mol=load_molecule(source))
    except GnnffError as err:
        record = Record(1, label, error=err)
    return slug(source), [""], iter([record])


def selected(source: str, name: str | None):
    """The prepared molecule (an RDKit Mol) of ``source``: a SMILES string, a file of one
    molecule, or a record selected by ``INPUT:N``, ``INPUT:NAME`` or ``name`` (``--name``).
    Read before anything is written, so a bad input leaves no output folder behind."""
    from gnnff.chem.molecule import load_molecule, looks_like_path

    if not looks_like_path(source):
        _no_selection(source, name)
    return load_molecule(source, record=name)


def _no_selection(smiles: str, name: str | None) -> None:
    """InputError if ``--name`` is given with a SMILES string."""
    if name is not None:
        from gnnff.chem.molecule import smiles_label

        raise InputError(f"{smiles_label(smiles)}: --name selects a record of a molecule file, and this input "
                         "is a SMILES string; leave --name out")


def input_stem(source: str, name: str | None = None) -> str:
    """A file's stem, or a name made from a SMILES string (for default output folders);
    ``INPUT:N``, ``INPUT:NAME`` or ``name`` (``--name``) appended (``ligands-3``)."""
    from gnnff.chem.molecule import looks_like_path

    if not looks_like_path(source):
        return slug(source)
    return _stem(source, name, lambda path: path.name.split(".")[0])


def _stem(source: str, name: str | None, stem: Callable[[Path], str]) -> str:
    """``stem`` of the file of ``source``, with ``-`` and the record it selects appended."""
    from gnnff.app.formats import title_stem
    from gnnff.chem.molecule import split_selector

    path, record = split_selector(source)
    record = record if name is None else name
    return stem(Path(path)) + (f"-{title_stem(str(record)) or 'record'}" if record is not None else "")


def slug(smiles: str, limit: int = 48) -> str:
    """A file name stem for a SMILES string: the SMILES itself when it holds only letters,
    digits, ``=``, ``+`` and ``-`` (``CCO``); else its runs of those characters joined by
    ``_`` and 8 hex digits of its SHA-256, so that different SMILES get different names
    (``[NH3+]CC(=O)[O-]`` -> ``NH3+_CC_=O_O-_..``)."""
    smiles = smiles.strip()
    safe = re.sub(r"[^A-Za-z0-9=+-]+", "_", smiles).strip("_-=+")
    if safe == smiles and len(smiles) <= limit:
        return smiles
    digest = hashlib.sha256(smiles.encode()).hexdigest()[:8]
    return f"{safe[:limit].rstrip('_')}_{digest}" if safe else digest


def name_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--name NAME``: read the record of that title from a file of several molecules."""
    parser.add_argument("--name", metavar="NAME", default=None,
                        help="read only the record titled NAME (SD title line, MOL2 name, SMILES-file name column) "
                             "from a file of several molecules; INPUT:N reads record N (1-based), INPUT:NAME the "
                             "record titled NAME")


def charge_methods() -> list[str]:
    """The charge methods of the classical model (:data:`gnnff.sources.charges.CHARGE_METHODS`)."""
    from gnnff.sources.charges import CHARGE_METHODS

    return list(CHARGE_METHODS)


def labelers() -> list[str]:
    """The reference methods (:data:`gnnff.train.labelers.LABELERS`)."""
    from gnnff.train.labelers import LABELERS

    return list(LABELERS)


class Listed(argparse.Action):
    """An option storing one value whose help ends with a registry's names, the default
    first: ``help="reference method: {}"`` shows as ``reference method: ani-2x (default),
    gfn2-xtb, b3lyp-d3bj``, so the help cannot drift from the registry.

    The names are read when the help is (``--help``, the generated CLI reference), not
    when the parser is built: the registries import NumPy and RDKit, which ``gnnff
    --version`` or a run of another subcommand should not wait for. The registry, not
    argparse, rejects an unknown name (its error lists the known ones).

    Parameters
    ----------
    names
        Returns the registry's names, in its order.
    marked
        The name marked "(default)" (default: the option's default).
    """

    def __init__(self, option_strings: list[str], dest: str, *, names: Callable[[], Iterable[str]],
                 marked: str | None = None, **kwargs) -> None:
        self._names, self._marked = names, marked
        super().__init__(option_strings, dest, **kwargs)

    @property
    def help(self) -> str:
        marked = self._marked if self._marked is not None else self.default
        names = [f"{marked} (default)", *(name for name in self._names() if name != marked)]
        return self._template.format(", ".join(names))

    @help.setter
    def help(self, template: str) -> None:  # set by argparse.Action.__init__
        self._template = template

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
