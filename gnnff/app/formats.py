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
from gnnff.units import DEGREE_TO_RAD, NM_TO_ANGSTROM

if TYPE_CHECKING:
    from gnnff.api import Parametrized

__all__ = ["FORMATS", "format_from_path", "output_files", "output_stems", "resolve_output", "title_stem",
           "write_parametrized"]

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


#: How messages list the suffixes an output may have.
_KNOWN_SUFFIXES = ", ".join(
    suffixes[0] + "".join(f" (+ {s})" for s in suffixes[1:]) for suffixes in FORMATS.values())


def resolve_output(path: str | os.PathLike, fmt: str | None = None) -> tuple[Path, str]:
    """The main file to write for output name ``path`` and its format.

    The suffix names the format (``.xml``, ``.ffxml``, ``.prmtop``, ``.top``); a name
    without a suffix gets the one of ``fmt`` (default ``xml``): ``-o lig --format amber``
    is ``lig.prmtop`` (+ ``lig.inpcrd``).

    Raises
    ------
    InputError
        ``fmt`` is unknown; the suffix is no format's (``out.pdb``, listing the known
        ones), is a companion file's (``.inpcrd``, ``.gro``), or contradicts ``fmt``.
    """
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown output format '{fmt}'; known formats: {', '.join(FORMATS)}")
    path = Path(path)
    suffix = path.suffix.lower()
    if not suffix:
        fmt = fmt or "xml"
        return path.with_name(path.name + FORMATS[fmt][0]), fmt
    named = next((name for name, suffixes in FORMATS.items() if suffix == suffixes[0]), None)
    if named is None:
        owner = next((name for name, suffixes in FORMATS.items() if suffix in suffixes[1:]), None)
        if owner is not None:
            raise InputError(f"{path}: name the main {owner} file ({path.with_suffix(FORMATS[owner][0]).name}); "
                             f"its {suffix} file is written beside it")
        raise InputError(f"{path}: unknown output suffix '{path.suffix}'; known: {_KNOWN_SUFFIXES}; "
                         "rename the output (a folder: end it with /)")
    if fmt is not None and fmt != named:
        raise InputError(f"{path}: a {suffix} file is format {named}, not {fmt}; name the output "
                         f"{path.with_suffix(FORMATS[fmt][0]).name} or choose format {named}")
    return path, named


def output_files(path: str | os.PathLike, fmt: str) -> list[Path]:
    """The files ``write_parametrized(result, path, fmt)`` creates: the main file
    (:func:`resolve_output`: ``x`` -> ``x.prmtop``), then companions with the format's
    other suffixes (``x.prmtop`` -> ``x.inpcrd``).

    Raises
    ------
    InputError
        As :func:`resolve_output` (unknown format, wrong suffix).
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown output format '{fmt}'; known formats: {', '.join(FORMATS)}")
    path, fmt = resolve_output(path, fmt)
    return [path] + [path.with_suffix(suffix) for suffix in FORMATS[fmt][1:]]


#: Longest stem :func:`title_stem` makes (the provenance record adds ``.`` + suffix + ``.gnnff.json``).
TITLE_STEM_LIMIT = 80

#: Names Windows reserves for devices, whatever the suffix: a stem equal to one gets a ``_``.
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                       *(f"LPT{i}" for i in range(1, 10))})


def title_stem(title: str) -> str:
    """A file name stem made from a record title: ASCII letters, digits and ``. _ + -``
    only (whitespace and every other character -> ``_``, runs of ``_`` folded), no leading
    or trailing ``. _ -`` (no hidden file, nothing read as an option), at most
    :data:`TITLE_STEM_LIMIT` characters; ``""`` when nothing is left.

    ``"Lig 1 (S)"`` -> ``Lig_1_S``; ``"*****"`` (MOL2's empty name) -> ``""``.
    """
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", " ".join(title.split())).strip("._-")
    stem = re.sub(r"_+", "_", stem)[:TITLE_STEM_LIMIT].rstrip("._-")
    return f"{stem}_" if stem.split(".")[0].upper() in _RESERVED else stem


def output_stems(titles: list[str]) -> list[str]:
    """The output file stem of each record of a batch, from its title (:func:`title_stem`),
    else its zero-padded 1-based number (``0007``, at least 4 digits).

    The stems are unique, ignoring case (for case-insensitive file systems): the first
    record with a stem keeps it, each later one gets ``_2``, ``_3``, ... (never a stem
    another record has). The result depends only on the titles in record order, so a
    rerun of the same input (resume) maps each record to the same file.
    """
    width = max(4, len(str(len(titles))))
    stems = [title_stem(title) or f"{i:0{width}d}" for i, title in enumerate(titles, start=1)]
    taken = {stem.lower() for stem in stems}
    seen: set[str] = set()
    out = []
    for stem in stems:
        if stem.lower() in seen:
            k = 2
            while f"{stem}_{k}".lower() in taken:
                k += 1
            stem = f"{stem}_{k}"
            taken.add(stem.lower())
        seen.add(stem.lower())
        out.append(stem)
    return out


def write_parametrized(result: Parametrized, path: str | os.PathLike, fmt: str = "xml") -> list[Path]:
    """Write ``result`` in format ``fmt`` to ``path`` (and its companion file).

    Parameters
    ----------
    result
        From :func:`gnnff.assign_parameters`.
    path
        Main output file, with the format's suffix or none (then added); its
        companion (``.inpcrd`` / ``.gro``) goes beside it.
    fmt
        One of :data:`FORMATS`.

    Returns
    -------
    list of Path
        The files written (main file first).

    Raises
    ------
    InputError
        ``path`` has another format's suffix or an unknown one (see :func:`resolve_output`).
    """
    from gnnff.files import atomic_write_text
    from gnnff.mm.export import system_xml

    files = output_files(path, fmt)
    if fmt == "xml":  # written from the parameters: the same text as XmlSerializer's, faster
        atomic_write_text(files[0], system_xml(result.topology, result.parameters))
    elif fmt == "ffxml":
        from gnnff.openmm import ffxml

        atomic_write_text(files[0], ffxml(result))
    else:
        _write_parmed(result, files, fmt)
    return files


def _structure(result: Parametrized):
    import parmed

    from gnnff.chem.molecule import positions_nm, with_conformer
    from gnnff.openmm import to_openmm_topology

    mol = with_conformer(result.mol)
    xyz_angstrom = positions_nm(mol)[0] * NM_TO_ANGSTROM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = parmed.openmm.load_topology(to_openmm_topology(result.mol), result.to_openmm(), xyz=xyz_angstrom)
    # ParmEd reads a second HarmonicBondForce as Urey-Bradley terms; GROMACS writes them
    # only on angles of function 5 (angle + Urey-Bradley)
    ends = {frozenset((ub.atom1.idx, ub.atom2.idx)) for ub in structure.urey_bradleys}
    for angle in structure.angles:
        if frozenset((angle.atom1.idx, angle.atom3.idx)) in ends:
            angle.funct = 5
    return structure


def _write_parmed(result: Parametrized, files: list[Path], fmt: str) -> None:
    from gnnff.files import atomic_write

    structure = _structure(result)
    main_format, coordinate_format = {"amber": ("amber", "rst7"), "gromacs": ("gromacs", "gro")}[fmt]

    def write_main(tmp: str) -> None:
        structure.save(tmp, format=main_format, overwrite=True)
        if fmt == "gromacs":
            # ParmEd's header names the file it wrote: the temporary one, not the output
            text = Path(tmp).read_text().replace(f"File {tmp} ", f"File {os.path.abspath(files[0])} ", 1)
            Path(tmp).write_text(_precise_lines(text, result))

    # The coordinates first, the main file last: an existing main file (what a resumed
    # batch looks for) means both are complete.
    atomic_write(files[1], lambda tmp: structure.save(tmp, format=coordinate_format, overwrite=True))
    try:
        atomic_write(files[0], write_main)
    except BaseException:
        files[1].unlink(missing_ok=True)
        raise


_SECTION = re.compile(r"^\s*\[\s*(\w+)\s*\]")


def _precise_lines(top: str, result: Parametrized) -> str:
    """ParmEd writes GROMACS bond lengths with 5 decimals (1e-5 nm, ~1e-3 relative error in
    a bond energy) and Urey-Bradley distances with 7; rewrite the ``[ bonds ]`` lines and
    the ``[ angles ]`` lines of function 5 (angle + Urey-Bradley) with the full float64
    values. GROMACS' harmonic forms are OpenMM's (``0.5 k (x - x0)^2``, nm, kJ/mol, degrees)."""
    from gnnff.schema import ANGLES, BONDS, UREY_BRADLEYS

    def values(term, names):
        p = result.parameters.term(term)
        return zip(*(getattr(p, name).detach().cpu().double().tolist() for name in names))

    top_ = result.topology
    bonds = {tuple(sorted((i + 1, j + 1))): (length, k)
             for (i, j), (length, k) in zip(top_.bonds.tolist(), values(BONDS, ("length", "k")))}
    angles = {}
    if result.parameters.has(UREY_BRADLEYS):
        ub = {tuple(row): v for row, v in zip(top_.urey_bradleys.tolist(), values(UREY_BRADLEYS, ("length", "k")))}
        for (i, j, k), (theta, k_theta) in zip(top_.angles.tolist(), values(ANGLES, ("angle", "k"))):
            key = (i + 1, j + 1, k + 1)
            angles[key] = angles[key[::-1]] = (theta / DEGREE_TO_RAD, k_theta, *ub[(i, j, k)])
    lines, section = [], None
    for line in top.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
        elif line.strip() and not line.lstrip().startswith(";"):
            words = line.split()
            if section == "bonds" and words[2] == "1":
                bond = bonds.get(tuple(sorted(map(int, words[:2]))))
                if bond is not None:
                    line = f"{words[0]:>7s} {words[1]:>6s} {1:>5d}   {bond[0]!r} {bond[1]!r}"
            elif section == "angles" and words[3] == "5":
                angle = angles.get(tuple(map(int, words[:3])))
                if angle is not None:
                    numbers = " ".join(repr(v) for v in angle)
                    line = f"{words[0]:>7s} {words[1]:>6s} {words[2]:>6s} {5:>5d}   {numbers}"
        lines.append(line)
    return "\n".join(lines) + "\n"
