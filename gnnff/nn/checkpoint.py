"""Checkpoints are data: network config + state_dict + chemical domain + versions.

They load with ``torch.load(weights_only=True)``; nothing is pickled but tensors and
plain containers. :func:`network_from_checkpoint` rebuilds the network and :func:`graph`
makes its input; :class:`gnnff.sources.gnn.GNNSource` turns a checkpoint into a
parameter source for :func:`gnnff.parametrize`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem

from gnnff._version import __version__
from gnnff.chem.features import atom_features, feature_fingerprint
from gnnff.chem.topology import Topology
from gnnff.errors import ModelError, first_line
from gnnff.files import atomic_write
from gnnff.nn.network import Graph, NetworkConfig, build_network
from gnnff.schema import TERMS, ForceFieldParameters, Term

__all__ = ["FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "network_from_checkpoint", "graph",
           "FeatureWarning"]

FORMAT = "gnnff-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, network: torch.nn.Module, config: NetworkConfig, *,
                    elements: list[int], ions_only: Sequence[int] = (), training: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None, series: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file + rename). ``series``: a fine-tuned model's
    domain note (``smiles`` of the series, ``similarity`` threshold, ``base`` model); loading
    it warns for molecules far from the series."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gnnff_version": __version__,
        "torch_version": str(torch.__version__),
        "network": config.to_dict(),
        # the feature code it was trained on (a later change to it changes the inputs)
        "feature_fingerprint": feature_fingerprint(config.features),
        # the terms the heads serve, and the schema's shape of each (columns per row)
        "terms": {term.name: _term_format(term) for term in config.terms},
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "domain": {"elements": sorted(int(z) for z in elements), "ions_only": sorted(int(z) for z in ions_only),
                   **({"series": series} if series else {})},
        "training": training or {},
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _term_format(term: Term) -> dict[str, Any]:
    """What a checkpoint records of a term it serves: its parameters and their units,
    arity and periodicities (a later gnnff that changed any of these cannot reuse the head)."""
    return {"arity": term.arity, "periodicities": list(term.periodicities), "form": term.form,
            "parameters": {f.name: f.metadata["unit"] for f in term.fields()}}


def _check_terms(payload: dict[str, Any], config: NetworkConfig | None, label: str) -> None:
    """The checkpoint's recorded terms against this gnnff's schema and the network config:
    a ModelError names the first term that does not fit. Checkpoints written before terms
    were recorded (gnnff-industry-v0) serve the required terms."""
    recorded = payload.get("terms")
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise ModelError(f"{label}: checkpoint 'terms' must be a mapping; the file is damaged")
    known = {t.name: t for t in TERMS}
    for name, stored in recorded.items():
        if name not in known:
            raise ModelError(f"{label}: checkpoint serves term '{name}', which this gnnff ({__version__}) "
                             f"does not know (known: {', '.join(known)}); use the gnnff that trained it")
        if stored != _term_format(known[name]):
            raise ModelError(f"{label}: checkpoint's term '{name}' was trained as {stored}, this gnnff "
                             f"defines it as {_term_format(known[name])}; retrain or use a matching gnnff")
    if config is None:
        return
    served = {t.name for t in config.terms}
    for name in sorted(served - set(recorded)):
        raise ModelError(f"{label}: checkpoint has no head for term '{name}' that its network config "
                         "names; the file is damaged")


def _check_heads(network: torch.nn.Module, state_dict: dict[str, Any], label: str) -> None:
    """Name the term whose head weights are missing from (or extra in) ``state_dict``,
    before ``load_state_dict`` would fail with a list of tensor names."""
    expected = {key.split(".")[1] for key in network.state_dict() if key.startswith("heads.")}
    present = {key.split(".")[1] for key in state_dict if key.startswith("heads.")}
    for name in sorted(expected - present):
        raise ModelError(f"{label}: checkpoint has no weights for the '{name}' head its config asks for; "
                         "the file is damaged or from another gnnff")
    for name in sorted(present - expected):
        raise ModelError(f"{label}: checkpoint has weights for a '{name}' head its config does not name; "
                         "the file is damaged or from another gnnff")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint; raise ModelError with the reason when unusable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise ModelError(f"{path}: not a readable gnnff checkpoint ({type(err).__name__}); "
                         "the file is corrupted or not a model, copy or train it again") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a gnnff checkpoint (no '{FORMAT}' format tag)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format version {version}, this gnnff ({__version__}) "
                         f"reads version {FORMAT_VERSION}; retrain or use a matching gnnff")
    for key in ("network", "state_dict", "domain"):
        if key not in payload:
            raise ModelError(f"{path}: checkpoint lacks '{key}'")
    return payload


def network_from_checkpoint(payload: dict[str, Any], label: str = "checkpoint") -> tuple[torch.nn.Module, NetworkConfig]:
    """Rebuild the network of a loaded checkpoint, in float32 eval mode (the precision it
    was trained in; :func:`graph` has it form the parameters in float64)."""
    if not isinstance(payload["network"], dict) or not isinstance(payload["state_dict"], dict):
        raise ModelError(f"{label}: checkpoint 'network' and 'state_dict' must be mappings; the file is damaged")
    _check_terms(payload, None, label)
    config = NetworkConfig.from_dict(payload["network"])
    _check_terms(payload, config, label)
    stored = payload.get("feature_fingerprint")  # absent in checkpoints older than the fingerprint
    here = feature_fingerprint(config.features) if stored is not None else None
    if stored != here:
        # a warning, not an error: another RDKit may enumerate resonance structures differently
        warnings.warn(f"{label}: trained on features '{config.features}' as computed by another gnnff or "
                      f"RDKit (fingerprint {stored}, here {here}); its "
                      "parameters may differ from those it was validated with: use the versions that trained "
                      "it, or retrain", FeatureWarning, stacklevel=2)
    try:
        network = build_network(config)
        _check_heads(network, payload["state_dict"], label)
        network.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, ValueError) as err:
        raise ModelError(f"{label}: weights do not fit the network ({first_line(err)}); "
                         "the checkpoint is damaged or from another gnnff") from None
    return network.float().eval(), config


class FeatureWarning(UserWarning):
    """A checkpoint was trained on features that this gnnff (or RDKit) computes differently."""


def graph(mols: Sequence[Chem.Mol], topologies: Sequence[Topology], features: str = "v0") -> Graph:
    """One graph of several molecules (atom indices offset, charge equilibration per
    molecule) for a checkpoint's network: message passing and heads in float32 (half the
    time of float64 on one core, and the precision the weights were trained in), charge
    equilibration and the parameter transforms in float64 (exact net charges)."""
    topology = topologies[0] if len(topologies) == 1 else Topology.batch(topologies)
    features = np.concatenate([atom_features(mol, features) for mol in mols])
    return Graph.from_topology(topology, features, torch.float32, output_dtype=torch.float64)


def _split(parameters: ForceFieldParameters, topologies: Sequence[Topology]) -> list[ForceFieldParameters]:
    """Cut the parameters of a batch into those of each molecule (rows follow each topology)."""
    if len(topologies) == 1:
        return [parameters]
    bounds = {term.name: np.cumsum([0] + [t.counts()[term.name] for t in topologies]).tolist() for term in TERMS}

    def piece(i: int) -> ForceFieldParameters:
        return parameters.map(lambda term, name, x: x[bounds[term.name][i]:bounds[term.name][i + 1]].clone())

    return [piece(i) for i in range(len(topologies))]
