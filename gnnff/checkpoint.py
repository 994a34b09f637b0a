"""Checkpoints are data: network config + state_dict + chemical domain + versions.

They load with ``torch.load(weights_only=True)``; nothing is pickled but tensors and
plain containers. :class:`GNNSource` turns a checkpoint into a parameter source for
:func:`gnnff.parametrize`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from rdkit import Chem

from gnnff._version import __version__
from gnnff.errors import ModelError
from gnnff.export import atomic_write
from gnnff.features import atom_features
from gnnff.molecule import check_elements
from gnnff.network import Graph, NetworkConfig, build_network
from gnnff.schema import ForceFieldParameters
from gnnff.topology import Topology

__all__ = ["FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "GNNSource"]

FORMAT = "gnnff-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, network: torch.nn.Module, config: NetworkConfig, *,
                    elements: list[int], training: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file + rename)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gnnff_version": __version__,
        "torch_version": str(torch.__version__),
        "network": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "domain": {"elements": sorted(int(z) for z in elements)},
        "training": training or {},
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint; raise ModelError with the reason when unusable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise ModelError(f"{path}: not a readable gnnff checkpoint ({type(err).__name__}); "
                         "the file is corrupted or not a model") from None
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
    """Rebuild the network of a loaded checkpoint, in float64 eval mode."""
    config = NetworkConfig.from_dict(payload["network"])
    network = build_network(config)
    try:
        network.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ModelError(f"{label}: weights do not fit the network ({str(err).splitlines()[0]})") from None
    return network.double().eval(), config


class GNNSource:
    """Parameter source backed by a trained gnnff checkpoint."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        payload = load_checkpoint(self.path)
        self.network, self.config = network_from_checkpoint(payload, str(self.path))
        self.elements = frozenset(payload["domain"]["elements"])
        self.training = payload.get("training", {})
        self.name = self.path.stem

    def __repr__(self) -> str:
        return f"GNNSource({str(self.path)!r})"

    def parameters(self, mol: Chem.Mol, topology: Topology) -> ForceFieldParameters:
        label = mol.GetProp("_Name") if mol.HasProp("_Name") else "molecule"
        check_elements(mol, self.elements, label=label, owner=f"model '{self.name}'")
        graph = Graph.from_topology(topology, atom_features(mol), torch.float64)
        with torch.no_grad():
            return self.network(graph)
