"""``gnnff models``: each known model with what it is, its elements, charges, size and
model card.

Reading the checkpoints and Sage's element list imports torch and RDKit (~1 s), in the
handler only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gnnff.errors import GnnffError

__all__ = ["add_arguments", "handle"]


def add_arguments(subparsers) -> None:
    """Add ``models`` to ``subparsers``."""
    m = subparsers.add_parser("models", help="list the known models")
    m.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print each model's name (the default marked) and its details, indented."""
    from importlib.metadata import entry_points

    from gnnff.sources.models import DEFAULT_MODEL, WEIGHTS_DIR, available_models

    plugins = {ep.name: ep.value for ep in entry_points(group="gnnff.models")}
    for name in available_models():
        print(name + ("  (default)" if name == DEFAULT_MODEL else ""))
        if name in _sage_releases():
            details = _sage_details(name)
        elif (WEIGHTS_DIR / f"{name}.pt").is_file():
            details = _checkpoint_details(WEIGHTS_DIR / f"{name}.pt")
        elif name in plugins:
            details = {"description": f"plugin model (entry point {plugins[name]})"}
        else:
            details = {"description": "registered at run time (gnnff.register_model)"}
        for key, value in details.items():
            print(f"    {key:12s} {value}")
    return 0


def _element_symbols(numbers) -> str:
    from rdkit import Chem

    return " ".join(Chem.GetPeriodicTable().GetElementSymbol(int(z)) for z in sorted(numbers))


def _sage_releases() -> dict:
    from gnnff.sources.classical import SAGE_RELEASES

    return SAGE_RELEASES


def _sage_details(name: str) -> dict[str, str]:
    from gnnff.sources.charges import CHARGE_METHODS

    release = _sage_releases()[name]
    others = ", ".join(m for m in CHARGE_METHODS if m != release.charges)
    return {"description": f"{release.title} ({release.offxml}, classical)",
            "elements": _element_symbols(release.elements),
            "charges": f"{release.charges} (default; --charges {others}); library charges for water and ions",
            "size": "-", "model card": "-"}


def _checkpoint_details(path: Path) -> dict[str, str]:
    from gnnff.nn.checkpoint import load_checkpoint
    from gnnff.nn.network import NetworkConfig

    try:
        payload = load_checkpoint(path)
        config = NetworkConfig.from_dict(payload["network"])
        elements = _element_symbols(payload["domain"]["elements"])
    except (GnnffError, KeyError, TypeError, ValueError) as err:
        return {"description": f"unreadable checkpoint ({' '.join(str(err).split())})"}
    tensors = payload["state_dict"].values()
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors})
    nonbonded = (f"; nonbonded network width {config.nonbonded_width}, depth {config.nonbonded_depth}"
                 if config.separate_nonbonded else "")
    card = path.with_suffix(".md")
    return {"description": f"gnnff GNN: message passing width {config.width}, depth {config.depth}; heads "
                           f"width {config.head_width}, depth {config.head_depth}; atom features "
                           f"{config.features}{nonbonded}",
            "elements": elements,
            "charges": ("predicted by the " + ("nonbonded network" if config.separate_nonbonded else "network")
                        + " (charge equilibration, exact net charge)"
                        + ("; library charges for ions" if config.separate_nonbonded else "")),
            "size": f"{path.stat().st_size / 1e6:.1f} MB, {sum(t.numel() for t in tensors):,} weights "
                    f"({', '.join(dtypes)})",
            "model card": str(card) if card.is_file() else "-"}
