"""What several subcommands share: reading the input, names made from it, and options
whose help lists a registry's names."""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gnnff.errors import GnnffError, InputError

__all__ = ["Listed", "charge_methods", "input_stem", "labelers", "records", "slug"]


def records(source: str) -> tuple[str, int, Iterator]:
    """The input's stem, its number of records, and the records (read lazily)."""
    from gnnff.chem.molecule import Record, count_records, load_molecule, looks_like_path, read_records

    if not source.strip():
        raise InputError("empty input: give a molecule file or a SMILES string")
    if looks_like_path(source):
        path = Path(source)
        return path.stem.removesuffix(".sdf"), count_records(path), read_records(path)
    try:
        record = Record(1, f"SMILES '{source}'", mol=load_molecule(source, name=source))
    except GnnffError as err:
        record = Record(1, f"SMILES '{source}'", error=err)
    return slug(source), 1, iter([record])


def input_stem(source: str) -> str:
    """A file's stem, or a name made from a SMILES string (for default output folders)."""
    from gnnff.chem.molecule import looks_like_path

    return Path(source).name.split(".")[0] if looks_like_path(source) else slug(source)


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
