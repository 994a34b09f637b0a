"""Output formats of a parametrized molecule: OpenMM System XML, ffxml residue
template, Amber prmtop/inpcrd and GROMACS top/gro (the last two through ParmEd).

Every format holds the same parameters; re-reading it with OpenMM gives the same
energy (tests/test_formats.py). Amber and GROMACS files also hold coordinates: the
input's 3D conformer, or an ETKDG conformer when the input has none. Each file is
written atomically; a format with two files writes both or neither.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from gnnff.errors import InputError

if TYPE_CHECKING:
    from gnnff.api import Parametrized

__all__ = ["FORMATS", "format_from_path", "output_files", "write_parametrized"]

#: Format name -> suffixes of the files it writes (the first is the main file).
FORMATS: dict[str, tuple[str, ...]] = {
    "xml": (".xml",),
    "ffxml": (".ffxml",),
    "amber": (".prmtop", ".inpcrd"),
    "gromacs": (".top", ".gro"),
}


def format_from_path(path: str | os.PathLike) -> str | None:
    """The format whose main suffix ``path`` has (``.ffxml``, ``.prmtop``, ``.top``), else None."""
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if name != "xml" and suffix == suffixes[0]:
            return name
    return None


def output_files(path: str | os.PathLike, fmt: str) -> list[Path]:
    """The files ``write_parametrized(result, path, fmt)`` creates: ``path`` itself,
    then companions with the format's other suffixes (``x.prmtop`` -> ``x.inpcrd``)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown output format '{fmt}'; known formats: {', '.join(FORMATS)}")
    path = Path(path)
    return [path] + [path.with_suffix(suffix) for suffix in FORMATS[fmt][1:]]


def write_parametrized(result: Parametrized, path: str | os.PathLike, fmt: str = "xml") -> list[Path]:
    """Write ``result`` in format ``fmt`` to ``path`` (and its companion file).

    Parameters
    ----------
    result
        From :func:`gnnff.assign_parameters`.
    path
        Main output file; its companion (``.inpcrd`` / ``.gro``) goes beside it.
    fmt
        One of :data:`FORMATS`.

    Returns
    -------
    list of Path
        The files written.
    """
    from gnnff.export import atomic_write_text, write_xml

    files = output_files(path, fmt)
    if fmt == "xml":
        write_xml(result.to_openmm(), files[0])
    elif fmt == "ffxml":
        from gnnff.openmm import ffxml

        atomic_write_text(files[0], ffxml(result))
    else:
        _write_parmed(result, files, fmt)
    return files


def _structure(result: Parametrized):
    import parmed

    from gnnff.molecule import positions_nm, with_conformer
    from gnnff.openmm import to_openmm_topology

    mol = with_conformer(result.mol)
    xyz_angstrom = positions_nm(mol)[0] * 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parmed.openmm.load_topology(to_openmm_topology(result.mol), result.to_openmm(), xyz=xyz_angstrom)


def _write_parmed(result: Parametrized, files: list[Path], fmt: str) -> None:
    from gnnff.export import atomic_write

    structure = _structure(result)
    main_format, coordinate_format = {"amber": ("amber", "rst7"), "gromacs": ("gromacs", "gro")}[fmt]

    def write_main(tmp: str) -> None:
        structure.save(tmp, format=main_format, overwrite=True)
        if fmt == "gromacs":
            text = Path(tmp).read_text()
            Path(tmp).write_text(_precise_bonds(text, result))

    # The coordinates first, the main file last: an existing main file (what a resumed
    # batch looks for) means both are complete.
    atomic_write(files[1], lambda tmp: structure.save(tmp, format=coordinate_format, overwrite=True))
    try:
        atomic_write(files[0], write_main)
    except BaseException:
        files[1].unlink(missing_ok=True)
        raise


_SECTION = re.compile(r"^\s*\[\s*(\w+)\s*\]")


def _precise_bonds(top: str, result: Parametrized) -> str:
    """ParmEd writes GROMACS bond lengths with 5 decimals (1e-5 nm, ~1e-3 relative error in
    a bond energy); rewrite the ``[ bonds ]`` lines with the full float64 values."""
    from gnnff.schema import BONDS

    p = result.parameters.term(BONDS)
    lengths = p.length.detach().cpu().double().tolist()
    ks = p.k.detach().cpu().double().tolist()
    table = {tuple(sorted((i + 1, j + 1))): (lengths[n], ks[n])
             for n, (i, j) in enumerate(result.topology.bonds.tolist())}
    lines, section = [], None
    for line in top.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
        elif section == "bonds" and line.strip() and not line.lstrip().startswith(";"):
            words = line.split()
            key = tuple(sorted((int(words[0]), int(words[1]))))
            if words[2] == "1" and key in table:
                length, k = table[key]
                line = f"{words[0]:>7s} {words[1]:>6s} {1:>5d}   {length!r} {k!r}"
        lines.append(line)
    return "\n".join(lines) + "\n"


