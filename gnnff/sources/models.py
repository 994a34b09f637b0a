"""Registry of parameter sources ("models"): name -> factory.

A parameter source turns a prepared molecule and its topology into
:class:`gnnff.schema.ForceFieldParameters`. Built-in sources are listed in
:data:`_BUILTIN`; other packages can add theirs through the ``gnnff.sources.models``
entry-point group, or at run time with :func:`register_model`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gnnff.errors import GnnffError, ModelError

if TYPE_CHECKING:  # annotations only: `gnnff models` must not import torch or RDKit
    from rdkit import Chem

    from gnnff.chem.topology import Topology
    from gnnff.schema import ForceFieldParameters

__all__ = [
    "DEFAULT_MODEL",
    "BatchedParameterSource",
    "ParameterSource",
    "available_models",
    "get_model",
    "register_model",
]

#: What ``parametrize`` uses when no model is named: the trained model shipped in
#: ``gnnff/weights`` (see its model card there).
DEFAULT_MODEL = "gnnff-v1"


@runtime_checkable
class ParameterSource(Protocol):
    """Anything that assigns MM parameters to a molecule.

    A source may also declare ``elements`` (atomic numbers it covers); multi-component
    inputs are then checked against them as a whole before being split.
    """

    name: str

    def parameters(self, mol: Chem.Mol, topology: Topology) -> ForceFieldParameters:
        """Parameters for ``mol``, rows following ``topology``."""
        ...


@runtime_checkable
class BatchedParameterSource(ParameterSource, Protocol):
    """A parameter source that can also do many molecules in one call (e.g. one network pass)."""

    def parameters_batch(self, mols: Sequence[Chem.Mol], topologies: Sequence[Topology],
                         labels: Sequence[str]) -> list[ForceFieldParameters | GnnffError]:
        """Parameters of each molecule, or the error that molecule met; ``labels`` name them in messages."""
        ...


def _sage(release: str, /, **options: Any) -> ParameterSource:
    from gnnff.sources.charges import CHARGE_METHODS
    from gnnff.sources.classical import SageSource

    method = options.get("charges")
    if method is not None and method not in CHARGE_METHODS:
        raise ModelError(f"unknown charge method '{method}'; known: {', '.join(CHARGE_METHODS)} "
                         f"(the charges option of model '{release}')")
    return SageSource(release=release, **options)


#: Sage 2.2 + AM1-BCC, and Sage 2.3.0 + NAGL (gnnff.sources.classical.SAGE_RELEASES)
_BUILTIN: dict[str, Callable[..., ParameterSource]] = {
    name: functools.partial(_sage, name) for name in ("sage", "sage-2.3")}

#: Trained models shipped inside the package: ``weights/NAME.pt`` is model ``NAME``.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def _packaged() -> dict[str, Path]:
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.pt"))}


_REGISTERED: dict[str, Callable[..., ParameterSource]] = {}


def register_model(name: str, factory: Callable[..., ParameterSource]) -> None:
    """Make ``factory(**options)`` available as model ``name``."""
    if name in _BUILTIN or name in _REGISTERED:
        raise ModelError(f"a model named '{name}' is already registered")
    _REGISTERED[name] = factory


def _entry_point_factories() -> dict[str, Callable[..., ParameterSource]]:
    return {ep.name: ep.load for ep in entry_points(group="gnnff.models")}


def available_models() -> list[str]:
    """Names of every known model."""
    return sorted({*_BUILTIN, *_REGISTERED, *_packaged(), *_entry_point_factories()})


def _checkpoint_source(path: Path) -> ParameterSource:
    """A GNNSource for ``path``, loaded once per file version: ``gnnff.parametrize(mol)``
    called in a loop must not re-read the checkpoint each time (24 ms vs 6 ms for aspirin)."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = (str(path), 0, 0)  # let GNNSource raise its own one-line error
    return _load_checkpoint_source(*key)


@functools.lru_cache(maxsize=4)
def _load_checkpoint_source(path: str, mtime_ns: int, size: int) -> ParameterSource:
    from gnnff.sources.gnn import GNNSource

    return GNNSource(path)


def get_model(model: str | ParameterSource | None = None, **options: Any) -> ParameterSource:
    """Resolve a model name or checkpoint path (``*.pt``), or pass a ParameterSource through.

    Raises
    ------
    ModelError
        The name is unknown (the message lists the known ones) or the options are
        not accepted by that model.
    """
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, str):
        if isinstance(model, ParameterSource):
            if options:
                raise ModelError("options cannot be given together with a model object")
            return model
        raise ModelError(f"a model must be a name or a ParameterSource, not {type(model).__name__}")
    packaged = _packaged()
    if model not in packaged and model.endswith(".pt") and not Path(model).is_file():
        raise ModelError(f"{model}: no such model file; give the path of a trained model (.pt) "
                         f"or a model name ({', '.join(available_models())})")
    if model in packaged or model.endswith(".pt") or Path(model).is_file():

        if options:
            raise ModelError(f"model '{model}' takes no options (got {sorted(options)})")
        return _checkpoint_source(Path(packaged.get(model, model)))
    factory = _BUILTIN.get(model) or _REGISTERED.get(model)
    if factory is None:
        plugins = _entry_point_factories()
        if model in plugins:
            factory = plugins[model]()
    if factory is None:
        raise ModelError(f"unknown model '{model}'; known models: {', '.join(available_models())}")
    try:
        return factory(**options)
    except TypeError as err:
        raise ModelError(f"model '{model}' does not accept these options: {err}") from None
