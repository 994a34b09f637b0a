"""``finetune()``: read the series, label it, fit, save the checkpoint, report."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict
from importlib import import_module
from pathlib import Path
from typing import Any, Sequence

from rdkit import Chem

from gnnff.errors import GnnffError, InputError
from gnnff.schema import NONBONDED
from gnnff.train.finetune.evaluate import evaluate
from gnnff.train.finetune.fitting import valence_heads
from gnnff.train.finetune.labels import ConformerLabels, ScanLabels, label_all
from gnnff.train.finetune.report import summarise, write_report
from gnnff.train.finetune.settings import FinetuneSettings
from gnnff.train.finetune.targets import (_profile_data, _training_data, driven_corrections, driven_rows,
                                          fitted_scans)

__all__ = ["finetune"]

#: (molecule, its labelled drives, its labelled conformers or None) per labelled molecule
Labelled = list[tuple[Chem.Mol, list[ScanLabels], ConformerLabels | None]]


def _read(inputs: Sequence[str | os.PathLike]) -> tuple[list[Chem.Mol], list[dict]]:
    from gnnff.chem.molecule import load_molecule, looks_like_path, read_records, with_conformer

    mols, failed = [], []
    for item in inputs:
        records = read_records(item) if looks_like_path(str(item)) or Path(item).is_file() else None
        if records is None:  # SMILES (or a molecule object): a bad one is reported like a bad record
            try:
                mols.append(with_conformer(load_molecule(item)))
            except GnnffError as err:
                failed.append({"molecule": str(item), "error": str(err)})
            continue
        for record in records:
            if record.error is not None:
                failed.append({"molecule": record.label, "error": str(record.error)})
            else:
                mols.append(with_conformer(record.mol))
    return mols, failed


def finetune(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
             settings: FinetuneSettings = FinetuneSettings(), work: str | os.PathLike | None = None,
             overwrite: bool = False, workers: int = 1, labeler=None, report: str | os.PathLike | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``settings.base`` on torsion drives of the molecules in ``inputs`` (files
    or SMILES); write the checkpoint ``output`` and the labels and report under ``work``
    (default: ``output`` without its suffix + ``.finetune``). Returns the summary (also
    ``work/report/summary.json``). A molecule that cannot be labelled is reported and
    left out; none left is an InputError. ``workers`` > 1 labels that many molecules at
    once, each in its own single-threaded process. ``labeler``: a labeler object to use
    instead of ``settings.labeler`` by name (in this process only). ``report``: the report
    folder (default ``work/report``)."""
    from gnnff.sources.gnn import GNNSource
    from gnnff.train.labelers import get_labeler

    output = Path(output)
    if output.suffix != ".pt":
        raise InputError(f"{output}: the fine-tuned model is a checkpoint; name it *.pt")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; --overwrite replaces it")
    work = Path(work) if work is not None else output.with_suffix(".finetune")
    base = _base_model(settings)
    if labeler is not None and workers > 1:
        raise InputError("finetune: a labeler object runs in this process only; use workers=1 or a labeler name")
    labeler = labeler if labeler is not None else get_labeler(settings.labeler)
    mols, failed = _read(inputs)
    if not mols and not failed:
        raise InputError("finetune: no molecule given")
    started = time.perf_counter()
    labelled, failures = label_all(_served(mols, base, failed), labeler, work / "labels" / labeler.name, settings,
                                   workers=workers, progress=progress)
    failed += failures
    if not labelled:
        raise InputError(f"finetune: no molecule could be labelled ({failed[0]['error'] if failed else ''})")
    seconds = {"labelling": time.perf_counter() - started}

    start = time.perf_counter()
    fitted = [fitted_scans(scans, settings) for _, scans, _ in labelled]
    network, history, corrections = _tune(base, labelled, fitted, settings, progress)
    seconds["fitting"] = time.perf_counter() - start
    record = _record(settings, labeler, labelled, fitted, network, history, corrections)
    _save(output, base, network, record, corrections, settings)

    start = time.perf_counter()
    report = Path(report) if report is not None else work / "report"
    scans, conformer_rows = evaluate(labelled, fitted, {"base": base, "tuned": GNNSource(output)}, settings.hold_out,
                                     progress=progress)
    rows = write_report(report, scans, conformer_rows, history,
                        {"reference": labeler.name, "base": record["base"], "tuned": output.stem})
    seconds["report"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - started
    return summarise(report, rows, conformer_rows, model=str(output), base=record["base"], labeler=labeler.name,
                     molecules=len(labelled), failed=failed, seconds=seconds, settings=asdict(settings),
                     work=str(work), report=str(report))


def _base_model(settings: FinetuneSettings):
    """The base model (a gnnff network, or InputError); an unknown ``--terms`` fails here, before any labelling."""
    from gnnff.sources.gnn import GNNSource
    from gnnff.sources.models import DEFAULT_MODEL, get_model

    base = get_model(settings.base or DEFAULT_MODEL)
    if not isinstance(base, GNNSource):
        raise InputError(f"finetune: base model '{settings.base}' is not a gnnff network (a classical force "
                         "field has no heads to tune); give a gnnff model name or checkpoint")
    valence_heads(base.network, settings.terms)
    return base


def _served(mols: list[Chem.Mol], base, failed: list[dict]) -> list[Chem.Mol]:
    """The molecules in the base model's domain; the others are added to ``failed`` (no
    labelling for a molecule the base model cannot serve)."""
    from gnnff.chem.molecule import name_of

    served = []
    for mol in mols:
        try:
            base._check(mol, name_of(mol))
            served.append(mol)
        except GnnffError as err:
            failed.append({"molecule": name_of(mol), "error": str(err)})
    return served


def _tune(base, labelled: Labelled, fitted: list[list[ScanLabels]], settings: FinetuneSettings, progress: bool):
    """The fit of a copy of the base network on the labels: (network, loss history, corrections)."""
    network = copy.deepcopy(base.network)
    data = [_training_data(mol, scans, settings.hold_out, confs)
            for (mol, _, confs), scans in zip(labelled, fitted)]
    profiles = [q for (mol, _, confs), scans in zip(labelled, fitted)
                for q in _profile_data(mol, scans, settings.hold_out, confs if settings.relax_conformers else None)]
    corrections = (driven_corrections(data, fitted, base.corrections) if settings.tune == "torsions"
                   else base.corrections)
    fit = import_module(__package__).fit  # the package's name: where callers (and tests) may replace it
    history, corrections = fit(network, data, settings, features=base.config.features, progress=progress,
                               profiles=profiles, driven=driven_rows(data, fitted), corrections=corrections)
    return network, history, corrections


def _record(settings: FinetuneSettings, labeler, labelled: Labelled, fitted: list[list[ScanLabels]], network,
            history: list[dict[str, float]], corrections) -> dict[str, Any]:
    """The checkpoint's ``finetune`` record: base model, labeler, molecules, scans, settings, metrics."""
    from gnnff.chem.molecule import name_of
    from gnnff.sources.models import DEFAULT_MODEL
    from gnnff.train.scan import OPTIMISER

    return {
        "base": settings.base or DEFAULT_MODEL, "labeler": labeler.method, "optimiser": OPTIMISER,
        "settings": asdict(settings),
        "molecules": [{"name": name_of(m), "smiles": Chem.MolToSmiles(Chem.RemoveHs(m)),
                       "scans": [list(s.torsion) for s in scans],
                       "held_out_scans": [list(s.torsion) for s in scans[len(fit_scans):]],
                       "conformers": 0 if confs is None else len(confs.energies)}
                      for (m, scans, confs), fit_scans in zip(labelled, fitted)],
        "trained": (["torsion corrections"] if settings.tune == "torsions"
                    else valence_heads(network, settings.terms)),
        "frozen": ["network"] if settings.tune == "torsions" else ["gnn", NONBONDED.name],
        "corrections": 0 if corrections is None else len(corrections),
        "final": history[-1] if history else None,
    }


def _save(output: Path, base, network, record: dict[str, Any], corrections, settings: FinetuneSettings) -> None:
    """Write the tuned checkpoint: the base's config, domain and training record, with the
    ``finetune`` record, the series (for the similarity warning) and the corrections."""
    from gnnff.nn.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(base.path)
    series = {"smiles": [m["smiles"] for m in record["molecules"]], "similarity": settings.similarity,
              "base": record["base"]}
    save_checkpoint(output, network, base.config, elements=sorted(base.elements), ions_only=sorted(base.ions_only),
                    training={**payload.get("training", {}), "finetune": record}, series=series,
                    extra=None if corrections is None else {"corrections": corrections.to_payload()})
