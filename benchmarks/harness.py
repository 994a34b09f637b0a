"""What the benchmark scripts share: where the data are, reading the molecule sets, running
several force fields side by side, bootstrap intervals, and writing results.

A script in ``benchmarks/<group>/`` puts ``benchmarks/`` on the import path and imports from
here::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the harness
    from harness import SHARED_DATA, force_fields  # noqa: E402

Only the standard library and ``gnnff.files`` are imported with this module, so a timing
script can take the paths without loading torch or OpenMM; the rest of gnnff is imported by
the functions that need it. The bootstrap statistics are gnnff's own, re-exported here (imported on first use):

- :func:`bootstrap_interval` (``gnnff.train.benchmark``): a statistic over values grouped by
  molecule, 95 % interval from resampling molecules;
- :func:`paired_differences` (``gnnff.train.benchmark``): two force fields' industry-protocol
  measures, the difference with an interval paired over the same molecules;
- :func:`bootstrap_statistics`, :func:`paired_difference`, :func:`against_baseline`,
  :func:`rmse`, :func:`mean_abs_relative_error` (``gnnff.condensed.common``): calculated
  against experimental values, per item, and the same paired against a baseline force field.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gnnff.files import atomic_write, atomic_write_csv, atomic_write_text

__all__ = [
    "INDUSTRY_SDF",
    "REFERENCES",
    "ROOT",
    "SHARED_DATA",
    "SPICE_SMILES",
    "against_baseline",
    "bootstrap_interval",
    "bootstrap_statistics",
    "common_items",
    "force_fields",
    "industry_keys",
    "mean_abs_relative_error",
    "paired_difference",
    "paired_differences",
    "png",
    "read_freesolv",
    "read_pure_liquids",
    "read_smiles",
    "report_failures",
    "rmse",
    "run",
    "run_side_by_side",
    "write_csv",
    "write_json",
]

#: The checkout (the folder holding ``benchmarks/``).
ROOT = Path(__file__).resolve().parents[1]
#: Committed reference results (full AM1-BCC charges, Sage's hydration and liquid results).
REFERENCES = ROOT / "benchmarks" / "references"
#: The shared data folder beside the checkout (``GNNFF_SHARED`` overrides its parent, as in
#: ``gnnff.condensed.common``).
SHARED_DATA = Path(os.environ.get("GNNFF_SHARED", ROOT.parent / "shared")) / "data"
#: QM-optimised conformers of the OpenFF industry benchmark (QCArchive SDF).
INDUSTRY_SDF = SHARED_DATA / "industry-benchmark-dev.sdf.gz"
#: SPICE PubChem SMILES, one molecule per line.
SPICE_SMILES = SHARED_DATA / "spice-pubchem-sets1-6.smi.gz"

#: Statistics re-exported from gnnff (one implementation each): name -> module.
_STATISTICS = {
    "bootstrap_interval": "gnnff.train.benchmark",
    "paired_differences": "gnnff.train.benchmark",
    "bootstrap_statistics": "gnnff.condensed.common",
    "paired_difference": "gnnff.condensed.common",
    "against_baseline": "gnnff.condensed.common",
    "rmse": "gnnff.condensed.common",
    "mean_abs_relative_error": "gnnff.condensed.common",
}


def __getattr__(name: str) -> Any:
    """The statistics of :data:`_STATISTICS`, imported from gnnff on first use."""
    if name in _STATISTICS:
        return getattr(importlib.import_module(_STATISTICS[name]), name)
    raise AttributeError(f"module 'harness' has no attribute '{name}'")


def _open_text(path: str | os.PathLike):
    """A text handle of ``path``, gzip-decompressed when its name ends in ``.gz``."""
    return gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")


# --- molecule sets ------------------------------------------------------------------------

def read_smiles(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The first field of each non-empty line of a SMILES file (``.smi`` or ``.smi.gz``), at
    most ``limit`` of them."""
    out: list[str] = []
    with _open_text(path) as handle:
        for line in handle:
            if limit is not None and len(out) >= limit:
                break
            if line.strip():
                out.append(line.split()[0])
    return out


def industry_keys(path: str | os.PathLike) -> set[str]:
    """Stereo-free canonical SMILES (``gnnff.chem.molecule.plain_smiles``) of every molecule
    of a QCArchive SDF such as :data:`INDUSTRY_SDF`: the molecules to hold out of another set."""
    from gnnff.chem.molecule import plain_smiles

    with _open_text(path) as handle:
        smiles = set(re.findall(r"> <SMILES QCArchive>\n(\S+)", handle.read()))
    return {key for key in map(plain_smiles, smiles) if key}


def read_freesolv(path: str | os.PathLike) -> list[dict]:
    """Rows of a FreeSolv CSV (``freesolv-dev.csv``): its columns, the experimental and GAFF
    values (kcal/mol) and uncertainties as floats, and ``heavy_atoms`` (999 for an unreadable
    SMILES)."""
    from rdkit import Chem

    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        mol = Chem.MolFromSmiles(row["smiles"])
        row["heavy_atoms"] = mol.GetNumHeavyAtoms() if mol is not None else 999
        for key in ("dG_hyd_exp_kcal_mol", "dG_hyd_exp_uncertainty", "dG_hyd_gaff_calc_kcal_mol",
                    "dG_hyd_gaff_calc_uncertainty"):
            row[key] = float(row[key])
    return rows


def read_pure_liquids(path: str | os.PathLike) -> list[dict]:
    """Pure-liquid densities of a physical-property CSV (``sage-physprop-train-v1.csv``: rows
    with ``N Components`` = 1 and a density): id, smiles, temperature_k, pressure_kpa,
    density (g/mL), source."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["N Components"] == "1" and r["Density Value (g / ml)"]]
    return [{"id": r["Id"], "smiles": r["Component 1"], "temperature_k": float(r["Temperature (K)"]),
             "pressure_kpa": float(r["Pressure (kPa)"]), "density": float(r["Density Value (g / ml)"]),
             "source": r["Source"]} for r in rows]


# --- force fields side by side ------------------------------------------------------------

def force_fields(names: Sequence[str], cache: Any = None, *, systems: bool = False) -> dict[str, Any]:
    """Label -> parameter source of each name: a model of gnnff's registry (``gnnff models``),
    a checkpoint path (``*.pt``, labelled by its file stem) or ``sage``. With ``cache`` (a
    ``gnnff.condensed.common.ChargeCache``), ``sage`` is Sage 2.2 with the cache's reference
    charges. With ``systems``, also ``systems:DIR``: another force field's precomputed OpenMM
    Systems, a ``gnnff.train.benchmark.SystemFolder`` labelled by DIR's name (for scripts
    that take each item's System by its id). An unknown name is a ``gnnff.ModelError``
    whose one line lists the known ones."""
    from gnnff.condensed.common import resolve_force_fields
    from gnnff.errors import ModelError
    from gnnff.train.benchmark import SYSTEMS_PREFIX, system_folder

    out: dict[str, Any] = {}
    for name in names:
        if not name.startswith(SYSTEMS_PREFIX):
            out.update(resolve_force_fields([name], cache))
        elif systems:
            folder = system_folder(name)
            out[folder.name] = folder
        else:
            raise ModelError(f"{name}: this benchmark needs a force field gnnff can parametrise molecules with; "
                             "precomputed Systems (systems:DIR) are taken by gas_phase/industry.py and "
                             "gas_phase/torsion_drives.py")
    return out


def run_side_by_side(items: Mapping[str, dict], sources: Mapping[str, Any], store: Any,
                     protocol: dict[str, Any], compute: Callable[[str, Any, str, dict], dict],
                     describe: Callable[[dict], str], line: Callable[[str, str, dict, dict], str],
                     ) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """Every force field of ``sources`` on every item of ``items`` (id -> row), item by item.

    A result stored in ``store`` (a ``gnnff.condensed.common.ResultStore``) under
    ``"{label}--{id}"`` and made with the same ``protocol`` is read back; any other is
    computed by ``compute(label, source, id, row)`` and stored as soon as it finishes, so an
    interrupted run resumes. A failure (GnnffError, ValueError, RuntimeError) becomes one line
    ``"{label} {id} ({describe(row)}): message"``, printed to stderr, and the run goes on.
    ``line(label, id, row, result)`` is printed for every result.

    Returns
    -------
    results, failed
        label -> id -> result (the items each force field finished), and the failure lines.
    """
    from gnnff.condensed.common import error_line
    from gnnff.errors import GnnffError

    results: dict[str, dict[str, dict]] = {label: {} for label in sources}
    failed: list[str] = []
    for item, row in items.items():
        for label, source in sources.items():
            key = f"{label}--{item}"
            done = store.load(key, protocol=protocol)
            if done is None:
                try:
                    done = compute(label, source, item, row)
                except (GnnffError, ValueError, RuntimeError) as err:
                    failed.append(error_line(f"{label} {item} ({describe(row)})", err))
                    print(failed[-1], file=sys.stderr)
                    continue
                store.save(key, done)
            results[label][item] = done
            print(line(label, item, row, done), flush=True)
    return results, failed


def common_items(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The item ids every force field of ``results`` (label -> id -> result) finished, sorted."""
    return sorted(set.intersection(*[set(r) for r in results.values()])) if results else []


# --- writing results ----------------------------------------------------------------------

def write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    """``rows`` as a CSV table with a header (the first row's keys, or ``fieldnames``),
    written atomically: a reader never sees half a table."""
    return atomic_write_csv(path, rows, fieldnames)


def write_json(path: str | os.PathLike, payload: Any, indent: int | None = 2) -> Path:
    """``payload`` as JSON text (and a final newline), written atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=indent) + "\n")


@contextmanager
def png(path: str | os.PathLike, dpi: int = 150, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``with png(path, figsize=...) as (fig, axes):`` draw; on leaving, the figure is laid
    out tightly and written to ``path`` atomically (matplotlib's Agg backend, ``dpi``), then
    closed. ``subplots``: arguments of ``matplotlib.pyplot.subplots``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def report_failures(path: str | os.PathLike, failed: list[str]) -> None:
    """Where items failed: their lines to ``path`` and ``'N failed: see PATH'`` printed;
    nothing without failures."""
    if failed:
        atomic_write_text(path, "\n".join(failed) + "\n")
        print(f"{len(failed)} failed: see {path}")


def run(main: Callable[[], None]) -> None:
    """Run a script's ``main``; a GnnffError (a setting or stored result that does not fit)
    ends it with one line, ``'SCRIPT.py: error: message'``, and exit status 1, no traceback."""
    from gnnff.errors import GnnffError

    try:
        main()
    except GnnffError as err:
        sys.exit(f"{Path(main.__code__.co_filename).name}: error: {err}")

