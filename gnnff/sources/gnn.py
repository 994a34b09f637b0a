"""The trained-model parameter source: a gnnff checkpoint (:mod:`gnnff.nn.checkpoint`)
as a :class:`~gnnff.sources.models.ParameterSource` for :func:`gnnff.parametrize`.

It checks a molecule against the checkpoint's chemical domain (elements, ions-only
elements, a fine-tuned model's series), runs the network inside
:func:`gnnff.threads.inference_threads`, adds a fine-tuned model's torsion corrections and
the library charges of inorganic ions.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from rdkit import Chem

from gnnff.chem.ions import library_charges
from gnnff.chem.molecule import check_elements
from gnnff.chem.similarity import fingerprint, nearest_similarity
from gnnff.chem.topology import Topology
from gnnff.errors import GnnffError, ModelError, ParametrizationError
from gnnff.nn.checkpoint import _split, graph, load_checkpoint, network_from_checkpoint
from gnnff.nn.corrections import TorsionCorrections
from gnnff.schema import ForceFieldParameters
from gnnff.sources.classical import (
    SAGE_ELEMENTS as SHIPPED_ELEMENTS,  # Sage's: a superset of every shipped model's
)
from gnnff.threads import inference_threads

__all__ = ["GNNSource", "SeriesWarning"]


class SeriesWarning(UserWarning):
    """A fine-tuned model parametrizes a molecule far from the series it was tuned on."""


def _series(payload: dict[str, Any], label: str) -> tuple[list, float, str] | None:
    """A fine-tuned checkpoint's series: (fingerprints, similarity threshold, base model)."""
    series = payload["domain"].get("series")
    if series is None:
        return None
    try:
        mols = [Chem.MolFromSmiles(s) for s in series["smiles"]]
        return [fingerprint(m) for m in mols if m is not None], float(series["similarity"]), str(series["base"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{label}: checkpoint's domain 'series' needs smiles, similarity and base; "
                         "the file is damaged") from None


def _domain(payload: dict[str, Any], label: str) -> frozenset[int]:
    try:
        return frozenset(int(z) for z in payload["domain"]["elements"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{label}: checkpoint 'domain' has no list of elements; the file is damaged") from None


class GNNSource:
    """Parameter source backed by a trained gnnff checkpoint."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        payload = load_checkpoint(self.path)
        self.network, self.config = network_from_checkpoint(payload, str(self.path))
        self.elements = _domain(payload, str(self.path))
        self.ions_only = frozenset(int(z) for z in payload["domain"].get("ions_only", []))
        self.training = payload.get("training", {})
        self.name = self.path.stem
        self.series = _series(payload, str(self.path))
        # a fine-tuned model's per-environment torsion residuals (None: the network alone)
        self.corrections = TorsionCorrections.from_payload(payload.get("corrections"), str(self.path))

    def __repr__(self) -> str:
        return f"GNNSource({str(self.path)!r})"

    def parameters(self, mol: Chem.Mol, topology: Topology) -> ForceFieldParameters:
        label = mol.GetProp("_Name") if mol.HasProp("_Name") else "molecule"
        self._check(mol, label)
        with torch.no_grad(), inference_threads(topology.n_atoms):
            return self._library(mol, self._corrected(mol, topology,
                                                      self.network(graph([mol], [topology], self.config.features))))

    def _check(self, mol: Chem.Mol, label: str) -> None:
        """Elements inside the domain; elements covered only as monatomic ions stand alone;
        a fine-tuned model warns (:class:`SeriesWarning`) for a molecule far from its series."""
        check_elements(mol, self.elements, label=label, owner=f"model '{self.name}'", ions_only=self.ions_only,
                       shipped=SHIPPED_ELEMENTS)
        if self.series is not None:
            fingerprints, threshold, base = self.series
            similarity = nearest_similarity(mol, fingerprints)
            if similarity < threshold:
                tuned = ("its torsion residuals were fitted to the series' torsion environments"
                         if self.corrections is not None else "its valence terms are tuned for the series")
                warnings.warn(f"{label}: model '{self.name}' was fine-tuned on a series of {len(fingerprints)} "
                              f"molecules and this one is far from it (nearest Tanimoto {similarity:.2f} < "
                              f"{threshold:.2f}); {tuned}, use the base model '{base}' for other molecules",
                              SeriesWarning, stacklevel=3)
        if not self.ions_only:
            return
        for atom in mol.GetAtoms():
            if atom.GetAtomicNum() in self.ions_only and atom.GetDegree() > 0:
                raise ParametrizationError(
                    f"{label}: atom {atom.GetIdx()} ({atom.GetSymbol()}) is bonded; model '{self.name}' covers "
                    f"{atom.GetSymbol()} only as a free monatomic ion; write it as a "
                    "separate ion, or use --model sage")

    def _corrected(self, mol: Chem.Mol, topology: Topology, parameters: ForceFieldParameters) -> ForceFieldParameters:
        """The torsion corrections of a fine-tuned model added (none: ``parameters`` as they are)."""
        if self.corrections is None:
            return parameters
        return self.corrections.apply(parameters, *self.corrections.rows(mol, topology))

    def _library(self, mol: Chem.Mol, parameters: ForceFieldParameters) -> ForceFieldParameters:
        """Library charges for inorganic ions (:mod:`gnnff.chem.ions`), for separate-nonbonded models."""
        if not self.config.separate_nonbonded:
            return parameters
        charges = library_charges(mol)
        if charges is None:
            return parameters
        nonbonded = parameters.nonbonded
        charge = torch.as_tensor(charges, dtype=nonbonded.charge.dtype)
        return parameters.replace(nonbonded=dataclasses.replace(nonbonded, charge=charge))

    def parameters_batch(self, mols: Sequence[Chem.Mol], topologies: Sequence[Topology],
                         labels: Sequence[str]) -> list[ForceFieldParameters | GnnffError]:
        """Parameters of several molecules from one network pass.

        Molecules outside the model's elements get their :class:`ParametrizationError`
        instead; the others are batched (message passing, heads and charge
        equilibration never mix molecules, so each result equals :meth:`parameters`
        of that molecule alone, to float rounding).
        """
        out: list[ForceFieldParameters | GnnffError | None] = [None] * len(mols)
        todo = []
        for i, (mol, label) in enumerate(zip(mols, labels)):
            try:
                self._check(mol, label)
                todo.append(i)
            except GnnffError as err:
                out[i] = err
        if todo:
            with torch.no_grad(), inference_threads(sum(topologies[i].n_atoms for i in todo)):
                batch = self.network(graph([mols[i] for i in todo], [topologies[i] for i in todo],
                                            self.config.features))
            for i, parameters in zip(todo, _split(batch, [topologies[i] for i in todo])):
                out[i] = self._library(mols[i], self._corrected(mols[i], topologies[i], parameters))
        return out  # type: ignore[return-value]
