"""What the condensed-phase benchmarks share: force fields, reference charges, result
files, statistics against experiment.

The force fields compared are named as on the command line: a gnnff model (a packaged
name such as ``gnnff-industry-v0`` or a ``model.pt``), or ``sage`` — OpenFF Sage 2.2
valence and Lennard-Jones with full AM1-BCC charges (OpenFF toolkit + AmberTools sqm,
with sqm's geometry optimisation), the combination users run today. AM1-BCC costs
5-60 s per molecule, so its charges are kept in a JSON cache keyed by the atom-mapped
SMILES (atom order included); the charge benchmark and the Sage runs share it.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem

from gnnff.api import Parametrized
from gnnff.chem.molecule import mapped_smiles
from gnnff.errors import GnnffError, InputError, ModelError, first_line
from gnnff.files import atomic_write, atomic_write_text
from gnnff.sources.models import DEFAULT_MODEL, ParameterSource, get_model

__all__ = [
    "DEFAULT_FORCE_FIELDS",
    "SHARED_DATA",
    "add_benchmark_arguments",
    "against_baseline",
    "ChargeCache",
    "ReferenceChargeSource",
    "ResultStore",
    "bootstrap_statistics",
    "error_line",
    "force_field_label",
    "mapped_smiles",
    "mean_abs_relative_error",
    "paired_difference",
    "require",
    "resolve_force_fields",
    "rmse",
    "template_forcefield",
]

#: Compared by default: the default gnnff model and Sage 2.2 + AM1-BCC.
DEFAULT_FORCE_FIELDS = (DEFAULT_MODEL, "sage")

#: The shared data folder, beside the checkout (``GNNFF_SHARED`` overrides its parent).
SHARED_DATA = Path(os.environ.get("GNNFF_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data"


def require(module: str, what: str) -> Any:
    """Import ``module`` or raise a ModelError saying what to install for ``what``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ModelError(f"{what} needs the Python module '{module}' ({err}); "
                         "install the benchmark extra: pip install 'gnnff[bench]'") from None


class ChargeCache:
    """Reference partial charges on disk: ``{mapped SMILES: {"charges": [...], "seconds": t}}``.

    Parameters
    ----------
    path
        JSON file (created on first write; rewritten atomically after each new entry),
        or None for an in-memory cache.
    method
        A :data:`gnnff.sources.charges.CHARGE_METHODS` name; ``"am1bcc"`` is the full AM1-BCC
        with sqm geometry optimisation.
    """

    def __init__(self, path: str | os.PathLike | None, method: str = "am1bcc") -> None:
        self.path = Path(path) if path is not None else None
        self.method = method
        self._data: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            payload = json.loads(self.path.read_text(encoding="utf-8"))
            if payload.get("method") != method:
                raise ModelError(f"{self.path}: holds '{payload.get('method')}' charges, not '{method}'; "
                                 "use another cache file")
            self._data = payload["charges"]

    def __contains__(self, mol: Chem.Mol) -> bool:
        return mapped_smiles(mol) in self._data

    def get(self, mol: Chem.Mol) -> np.ndarray:
        """Charges ``(n_atoms,)`` in e of ``mol`` (computed and stored on a miss)."""
        key = mapped_smiles(mol)
        if key not in self._data:
            self._store(key, *_timed_charges(mol, self.method))
        return np.asarray(self._data[key]["charges"], dtype=float)

    def seconds(self, mol: Chem.Mol) -> float:
        """Wall time the charges of ``mol`` took when they were computed."""
        return float(self._data[mapped_smiles(mol)]["seconds"])

    def merge(self, path: str | os.PathLike) -> int:
        """Add the entries of another cache file (JSON, or gzipped JSON: a committed snapshot)
        that this cache lacks; returns how many. A file of another charge method is refused."""
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            payload = json.load(handle)
        if payload.get("method") != self.method:
            raise ModelError(f"{path}: holds '{payload.get('method')}' charges, not '{self.method}'")
        new = {key: entry for key, entry in payload["charges"].items() if key not in self._data}
        if new:
            self._data.update(new)
            self._write()
        return len(new)

    def snapshot(self, path: str | os.PathLike, mols: Sequence[Chem.Mol]) -> int:
        """Write the cached entries of ``mols`` to ``path`` as gzipped JSON (a file
        :meth:`merge` reads), atomically; returns how many were written."""
        keys = [mapped_smiles(mol) for mol in mols]
        entries = {key: self._data[key] for key in sorted(set(keys)) if key in self._data}
        data = gzip.compress(json.dumps({"method": self.method, "charges": entries}).encode(), mtime=0)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        return len(entries)

    def fill(self, mols: Sequence[Chem.Mol], workers: int = 1, progress: bool = True) -> list[str]:
        """Compute the charges of every molecule of ``mols`` not yet cached, ``workers`` at a time.

        Each result is stored (and the file rewritten) as it arrives, so an interrupted fill
        resumes. A molecule whose charges fail is left out of the cache; its one-line error
        (``'NAME: message'``) is returned, and the others go on.
        """
        from tqdm import tqdm

        from gnnff.pool import WorkerPool

        todo: dict[str, Chem.Mol] = {}
        for mol in mols:
            todo.setdefault(mapped_smiles(mol), mol)
        todo = {key: mol for key, mol in todo.items() if key not in self._data}
        failed: list[str] = []
        if not todo:
            return failed
        bar = tqdm(total=len(todo), desc=f"{self.method} charges", unit="mol", disable=not progress or None)
        tasks = [(key, mol, self.method) for key, mol in todo.items()]
        with WorkerPool(workers) as pool:
            for result in pool.imap(_timed_charges_task, tasks, ordered=False, progress=lambda _: bar.update()):
                key, mol, _ = result.item
                if result.ok:
                    self._store(key, *result.value)
                else:
                    failed.append(f"{mol.GetProp('_Name') if mol.HasProp('_Name') else key}: {result.failure}")
        bar.close()
        return failed

    def _store(self, key: str, charges: np.ndarray, seconds: float) -> None:
        self._data[key] = {"charges": np.asarray(charges, dtype=float).tolist(), "seconds": seconds}
        self._write()

    def _write(self) -> None:
        """Rewrite the cache file (atomically), if this cache has one."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"method": self.method, "charges": self._data}))


def _timed_charges(mol: Chem.Mol, method: str) -> tuple[np.ndarray, float]:
    """(charges, wall seconds) of one molecule: the unit of work of :meth:`ChargeCache.fill`."""
    from gnnff.sources.charges import assign_charges

    start = time.perf_counter()
    charges = assign_charges(mol, method)
    return charges, time.perf_counter() - start


def _timed_charges_task(task: tuple[str, Chem.Mol, str]) -> tuple[np.ndarray, float]:
    """:func:`_timed_charges` of a ``(key, molecule, method)`` task of :meth:`ChargeCache.fill`."""
    return _timed_charges(task[1], task[2])


class ReferenceChargeSource:
    """A parameter source whose charges are replaced by cached reference charges.

    ``ReferenceChargeSource(get_model("sage", charges="mmff94"), cache)`` is Sage 2.2 with
    the cache's AM1-BCC charges; the valence terms and Lennard-Jones are the base's.
    """

    def __init__(self, base: ParameterSource, cache: ChargeCache) -> None:
        self.base = base
        self.cache = cache
        self.name = f"{base.name}+{cache.method}"
        self.elements = getattr(base, "elements", None)

    def __repr__(self) -> str:
        return f"ReferenceChargeSource({self.base!r}, charges={self.cache.method!r})"

    def parameters(self, mol: Chem.Mol, topology: Any) -> Any:
        parameters = self.base.parameters(mol, topology)
        charges = torch.as_tensor(self.cache.get(mol), dtype=parameters.nonbonded.charge.dtype)
        return parameters.replace(nonbonded=dataclasses.replace(parameters.nonbonded, charge=charges))


def force_field_label(name: str) -> str:
    """Short label of a force-field name: the file stem of a checkpoint path."""
    return Path(name).stem if name.endswith(".pt") else name


def resolve_force_fields(names: Sequence[str], cache: ChargeCache | None = None) -> dict[str, ParameterSource]:
    """Label -> parameter source; ``sage`` is Sage 2.2 with ``cache``'s charges (without a
    cache, with the Sage model's default charges). An unknown name is a ModelError listing
    the known ones."""
    out: dict[str, ParameterSource] = {}
    for name in names:
        if name == "sage" and cache is not None:
            out["sage"] = ReferenceChargeSource(get_model("sage", charges="mmff94"), cache)
        else:
            out[force_field_label(name)] = get_model(name)
    return out


def template_forcefield(results: Sequence[Parametrized], *files: str) -> Any:
    """An ``openmm.app.ForceField`` of ``files`` (default TIP3P) plus one gnnff ffxml
    residue template per parametrized molecule."""
    from openmm import app

    from gnnff.openmm import ffxml

    forcefield = app.ForceField(*(files or ("amber14/tip3p.xml",)))
    for result in results:
        forcefield.loadFile(io.StringIO(ffxml(result)))
    return forcefield


def _protocol_difference(result: dict[str, Any], protocol: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first setting (the platform aside) in which ``result`` was made otherwise than
    ``protocol`` asks: (name, stored, wanted), or None."""
    wanted = json.loads(json.dumps(protocol))
    stored = result.get("protocol", {})
    for k in wanted:
        if k != "platform" and stored.get(k) != wanted[k]:
            return k, stored.get(k), wanted[k]
    return None


class ResultStore:
    """One JSON file per finished item in a folder, written atomically: an interrupted
    run resumes by skipping the items whose file exists.

    ``baseline``: a read-only folder of results made before (the committed Sage results of
    the CPU protocols, ``benchmarks/references/``), used for an item this store lacks when
    it was made with the same protocol; such a result carries ``"baseline": <its file>``.
    """

    def __init__(self, folder: str | os.PathLike, baseline: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.baseline = Path(baseline) if baseline else None

    def path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return self.folder / f"{safe}.json"

    def load(self, key: str, protocol: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The stored result of ``key``, or None. With ``protocol``, a result made with other
        settings (its ``"protocol"`` entry; the platform may differ) is an InputError: mixing
        protocols in one table would be wrong. A baseline result of other settings is not used."""
        path = self.path(key)
        if not path.is_file():
            return self._from_baseline(path.name, protocol)
        result = json.loads(path.read_text(encoding="utf-8"))
        if protocol is not None:
            differ = _protocol_difference(result, protocol)
            if differ:
                k, stored, wanted = differ
                raise InputError(f"{path}: made with {k}={stored!r}, this run has {k}={wanted!r}; "
                                 f"use another --output folder or delete {self.folder}")
        return result

    def _from_baseline(self, name: str, protocol: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.baseline is None or not (self.baseline / name).is_file():
            return None
        path = self.baseline / name
        result = json.loads(path.read_text(encoding="utf-8"))
        if protocol is not None and _protocol_difference(result, protocol):
            return None
        return {**result, "baseline": str(path)}

    def save(self, key: str, result: dict[str, Any]) -> Path:
        return atomic_write_text(self.path(key), json.dumps(result, indent=1) + "\n")


def _r2(calc: np.ndarray, exp: np.ndarray) -> float:
    """Squared Pearson correlation (the R^2 FreeSolv and the OpenFF papers report)."""
    if len(calc) < 3 or np.std(calc) == 0 or np.std(exp) == 0:
        return float("nan")
    return float(np.corrcoef(calc, exp)[0, 1] ** 2)


_STATISTICS = {
    "RMSE": lambda d, c, e: rmse(c, e),
    "MAE": lambda d, c, e: float(np.mean(np.abs(d))),
    "MSE": lambda d, c, e: float(np.mean(d)),
    "R2": lambda d, c, e: _r2(c, e),
}


def bootstrap_statistics(calc: Sequence[float], exp: Sequence[float], *, n_boot: int = 2000,
                         seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """RMSE, MAE, mean signed error (MSE, calc - exp) and R^2 with 95 % bootstrap
    intervals over the items: ``{name: (value, low, high)}``."""
    calc, exp = np.asarray(calc, dtype=float), np.asarray(exp, dtype=float)
    if calc.shape != exp.shape or calc.size == 0:
        return {name: (float("nan"),) * 3 for name in _STATISTICS}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(calc), size=(n_boot, len(calc)))
    out = {}
    for name, statistic in _STATISTICS.items():
        value = statistic(calc - exp, calc, exp)
        boot = np.array([statistic(calc[i] - exp[i], calc[i], exp[i]) for i in draws])
        boot = boot[~np.isnan(boot)]
        low, high = (np.percentile(boot, [2.5, 97.5]) if boot.size else (float("nan"),) * 2)
        out[name] = (value, float(low), float(high))
    return out


def paired_difference(calc: Sequence[float], other: Sequence[float], exp: Sequence[float],
                      statistic: Callable[[np.ndarray, np.ndarray], float], *, n_boot: int = 2000,
                      seed: int = 0) -> tuple[float, float, float]:
    """``statistic(calc, exp) - statistic(other, exp)`` with a 95 % bootstrap interval whose
    resamples take the same items for both force fields (paired, so how hard each molecule is
    cancels): ``(value, low, high)``. For an error statistic, negative favours ``calc``."""
    calc, other, exp = (np.asarray(x, dtype=float) for x in (calc, other, exp))
    if not (calc.shape == other.shape == exp.shape) or calc.size == 0:
        return (float("nan"),) * 3
    value = statistic(calc, exp) - statistic(other, exp)
    draws = np.random.default_rng(seed).integers(0, len(calc), size=(n_boot, len(calc)))
    boot = np.array([statistic(calc[i], exp[i]) - statistic(other[i], exp[i]) for i in draws])
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(value), float(low), float(high)


def against_baseline(columns: dict[str, Sequence[float]], exp: Sequence[float], statistics: dict[str, tuple],
                     table: list[dict], baseline: str = "sage") -> list[str]:
    """Report lines of each force field's statistics minus the ``baseline``'s, paired over the
    same items, and the same numbers added to its row of ``table`` (rows in ``columns``' order);
    ``statistics``: name -> (function of (calc, exp), number format, unit). None without a baseline."""
    if baseline not in columns:
        return []
    lines = []
    for row, (label, calc) in zip(table, columns.items()):
        if label == baseline:
            continue
        cells = []
        for name, (statistic, fmt, unit) in statistics.items():
            value, low, high = paired_difference(calc, columns[baseline], exp, statistic)
            cells.append(f"{name} {fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]{unit}")
            column = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")  # "mean |rel. error|" -> mean_rel_error
            row.update({f"{column}_minus_{baseline}": value, f"{column}_minus_{baseline}_low": low,
                        f"{column}_minus_{baseline}_high": high})
        lines.append(f"{label} - {baseline}, paired over the same items (negative: closer to experiment): "
                     + "; ".join(cells))
    return lines


def rmse(calc: np.ndarray, exp: np.ndarray) -> float:
    """Root-mean-square error of ``calc`` against ``exp``."""
    return float(np.sqrt(np.mean((np.asarray(calc) - np.asarray(exp)) ** 2)))


def mean_abs_relative_error(calc: np.ndarray, exp: np.ndarray) -> float:
    """Mean of |calc / exp - 1|, in percent."""
    return float(np.mean(np.abs(np.asarray(calc) / np.asarray(exp) - 1))) * 100


def add_benchmark_arguments(parser: Any, *, output: str, baseline: str | os.PathLike | None = None) -> None:
    """The options every condensed-phase benchmark script takes: force fields, the AM1-BCC
    cache, the OpenMM platform, the output folder and a folder of baseline results."""
    parser.add_argument("--force-field", action="append", default=None,
                        help="gnnff model name or .pt, or 'sage' (Sage 2.2 + AM1-BCC); repeatable "
                             f"(default: {' '.join(DEFAULT_FORCE_FIELDS)})")
    parser.add_argument("--platform", help="OpenMM platform (default: the fastest)")
    parser.add_argument("--charge-cache", help="AM1-BCC cache (default: OUT/am1bcc-cache.json)")
    parser.add_argument("-o", "--output", default=output, help="output folder (default: %(default)s)")
    parser.add_argument("--baseline", default=str(baseline) if baseline else None, metavar="FOLDER",
                        help="read-only results made before with the same protocol, used where OUT has none "
                             "(default: %(default)s, the committed Sage results; '' for none)")


def error_line(label: str, err: GnnffError | Exception) -> str:
    """One line for a failed item of a benchmark."""
    return f"{label}: {first_line(err)}"
