"""Nonbonded training labels: reference charges and Sage 2.2 Lennard-Jones per molecule.

The labels of gnnff-v1's nonbonded network, computed from SMILES (no QM data needed):
charges by a :data:`gnnff.sources.charges.CHARGE_METHODS` method (``am1bcc-mmff`` by default, one
ETKDG conformer), sigma and epsilon from Sage 2.2's SMIRNOFF typing.

Stored as JSON Lines, one molecule per line, appended as each molecule finishes, so a run
that is interrupted resumes where it stopped (a torn last line is ignored and redone).
A line is either a label::

    {"input": ..., "source": ..., "smiles": MAPPED, "key": KEY, "charges": [...],
     "sigma": [...], "epsilon": [...], "method": ..., "seconds": t}

or a failure ``{"input": ..., "source": ..., "error": "..."}``. ``smiles`` is the mapped,
explicit-hydrogen SMILES of the labelled molecule (its atom order); ``key`` is
:func:`gnnff.chem.molecule.molecule_key`.

The two halves can run apart: ``lennard_jones=False`` writes charge-only entries (this
needs only RDKit and AmberTools, so it runs on a machine without OpenMM or the OpenFF
toolkit, e.g. a many-core box), and :func:`add_lennard_jones` completes them here
(Sage typing, ~15 ms per molecule).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from rdkit import Chem, RDLogger
from tqdm import tqdm

from gnnff.chem.molecule import mapped_smiles
from gnnff.errors import GnnffError, InputError, first_line
from gnnff.pool import Result, WorkerPool

__all__ = ["LABEL_METHOD", "add_lennard_jones", "label_molecule", "label_nonbonded", "read_labels",
           "prepared_from_mapped_smiles"]

#: The charge method of gnnff-v1's labels.
LABEL_METHOD = "am1bcc-mmff"


def prepared_from_mapped_smiles(smiles: str, label: str) -> Chem.Mol:
    """The prepared molecule of a mapped SMILES, atoms in map-number order, named ``label``."""
    from gnnff.chem.molecule import mol_from_mapped_smiles as parse
    from gnnff.chem.molecule import prepare

    mol = parse(smiles, label)
    mol.SetProp("_Name", label)
    return prepare(mol, label=label)


def label_molecule(smiles: str, source: str = "", method: str = LABEL_METHOD,
                   lennard_jones: bool = True) -> dict[str, Any]:
    """Label one molecule given by SMILES (mapped or plain); a failure becomes an ``error``
    entry. ``lennard_jones=False`` leaves out sigma and epsilon (see :func:`add_lennard_jones`)."""
    from gnnff.chem.molecule import load_molecule, molecule_key, with_conformer
    from gnnff.sources.charges import assign_charges

    RDLogger.DisableLog("rdApp.*")
    start = time.perf_counter()
    try:
        if ":" in smiles and "[" in smiles:
            try:
                mol = prepared_from_mapped_smiles(smiles, smiles)
            except InputError:
                mol = load_molecule(smiles, name=smiles)
        else:
            mol = load_molecule(smiles, name=smiles)
        if len(Chem.GetMolFrags(mol)) > 1:
            raise InputError(f"{smiles}: several components; label each on its own")
        charges = assign_charges(with_conformer(mol), method)
        entry = {"input": smiles, "source": source, "smiles": mapped_smiles(mol), "key": molecule_key(mol),
                 "charges": np.round(charges, 6).tolist(), "method": method}
        if lennard_jones:
            entry.update(_lennard_jones(mol))
    except (GnnffError, ValueError, RuntimeError) as err:
        return {"input": smiles, "source": source, "error": first_line(err)}
    entry["seconds"] = round(time.perf_counter() - start, 3)
    return entry


def _lennard_jones(mol: Chem.Mol) -> dict[str, list[float]]:
    from gnnff.sources.classical import SageSource

    sigma, epsilon = SageSource().lennard_jones(mol)
    return {"sigma": np.round(sigma, 7).tolist(), "epsilon": np.round(epsilon, 7).tolist()}


def add_lennard_jones(source: str | os.PathLike, path: str | os.PathLike) -> dict[str, int]:
    """Append the entries of the label file ``source`` to ``path``, with Sage sigma and
    epsilon added where they are missing (charge-only entries), resuming.

    Inputs already in ``path`` are skipped; failures are copied as they are; an entry
    whose molecule Sage cannot type becomes a failure. Returns counts ``done``,
    ``labelled``, ``failed``.
    """
    RDLogger.DisableLog("rdApp.*")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(path)
    seen = {entry["input"] for entry in read_labels(path)}
    entries = list(read_labels(source))
    todo = [entry for entry in entries if entry["input"] not in seen]
    counts = {"done": len(entries) - len(todo), "labelled": 0, "failed": 0}

    def completed() -> Iterator[dict[str, Any]]:
        for entry in todo:
            if "error" in entry or "sigma" in entry:
                yield entry
                continue
            try:
                mol = prepared_from_mapped_smiles(entry["smiles"], entry["input"])
                yield {**entry, **_lennard_jones(mol)}
            except (GnnffError, ValueError, RuntimeError) as err:
                yield {"input": entry["input"], "source": entry.get("source", ""), "error": first_line(err)}

    with open(path, "a", encoding="utf-8") as handle:
        _append(handle, tqdm(completed(), total=len(todo), desc="Sage Lennard-Jones", unit="mol",
                             disable=None), counts)
    return counts


def _label_task(task: tuple[str, str, str, bool]) -> dict[str, Any]:
    return label_molecule(*task)


def read_labels(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The entries of a label file, failures included; a torn last line is skipped."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "input" in entry:
                yield entry


def label_nonbonded(molecules: Iterable[tuple[str, str]], path: str | os.PathLike, *,
                    method: str = LABEL_METHOD, workers: int = 1, limit: int | None = None,
                    lennard_jones: bool = True) -> dict[str, int]:
    """Label ``(smiles, source)`` pairs into the JSON Lines file ``path``, resuming.

    Inputs already in the file (labelled or failed) are not redone. ``limit`` caps the
    number of new molecules of this call; ``lennard_jones=False`` writes charge-only
    entries. Returns counts: ``done`` (already there), ``labelled``, ``failed`` (this call).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(path)
    seen = {entry["input"] for entry in read_labels(path)}
    todo, skipped = [], 0
    for smiles, source in molecules:
        if smiles in seen:
            skipped += 1
            continue
        seen.add(smiles)
        todo.append((smiles, source, method, lennard_jones))
        if limit is not None and len(todo) >= limit:
            break
    counts = {"done": skipped, "labelled": 0, "failed": 0}
    progress = dict(total=len(todo), desc=f"labels ({method}{' + Sage LJ' if lennard_jones else ''})", unit="mol", disable=None)
    with open(path, "a", encoding="utf-8") as handle, WorkerPool(workers if len(todo) > 1 else 1) as pool:
        results = pool.imap(_label_task, todo, ordered=False, chunksize=2)
        _append(handle, tqdm(map(_label_entry, results), **progress), counts)
    return counts


def _label_entry(result: Result) -> dict[str, Any]:
    """The label file's entry of one :func:`_label_task`: its label, or an ``error`` entry
    (:func:`label_molecule` makes those of gnnff's errors; here those of unexpected ones)."""
    if result.ok:
        return result.value
    smiles, source = result.item[:2]
    return {"input": smiles, "source": source, "error": str(result.failure)}


def _append(handle, results: Iterable[dict[str, Any]], counts: dict[str, int]) -> None:
    for entry in results:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        counts["failed" if "error" in entry else "labelled"] += 1


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left without its newline by an interrupted run."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.seek(data.rfind(b"\n") + 1)
        handle.truncate()
