"""gnnff: molecular-mechanics force fields from a graph neural network, exported to OpenMM.

The public API is imported lazily: ``import gnnff`` loads only the version and the
exception hierarchy, and the first use of any other name (``gnnff.parametrize``,
``gnnff.Topology``, ...) imports the module that defines it. This keeps
``gnnff --version`` and ``gnnff --help`` free of PyTorch and OpenMM start-up time.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from gnnff._version import __version__
from gnnff.errors import (
    ChemistryError,
    GnnffError,
    InputError,
    ModelError,
    ParametrizationError,
)

if TYPE_CHECKING:  # what static tools and IDEs see; at run time these load on first use
    from gnnff.api import (
        Parametrized,
        assign_parameters,
        assign_parameters_many,
        parametrize,
    )
    from gnnff.chem.molecule import load_molecule, read_records
    from gnnff.chem.topology import Topology, build_topology
    from gnnff.mm.energy import compute_energy, forces, total_energy
    from gnnff.mm.export import to_openmm, to_xml, write_xml
    from gnnff.schema import REQUIRED_TERMS, TERMS, ForceFieldParameters
    from gnnff.sources.models import available_models, get_model, register_model
    from gnnff.threads import set_inference_threads

#: Public name -> module that defines it (imported on first attribute access).
_LAZY: dict[str, str] = {
    "Parametrized": "gnnff.api",
    "assign_parameters": "gnnff.api",
    "assign_parameters_many": "gnnff.api",
    "parametrize": "gnnff.api",
    "compute_energy": "gnnff.mm.energy",
    "forces": "gnnff.mm.energy",
    "total_energy": "gnnff.mm.energy",
    "to_openmm": "gnnff.mm.export",
    "to_xml": "gnnff.mm.export",
    "write_xml": "gnnff.mm.export",
    "available_models": "gnnff.sources.models",
    "get_model": "gnnff.sources.models",
    "register_model": "gnnff.sources.models",
    "load_molecule": "gnnff.chem.molecule",
    "read_records": "gnnff.chem.molecule",
    "TERMS": "gnnff.schema",
    "REQUIRED_TERMS": "gnnff.schema",
    "ForceFieldParameters": "gnnff.schema",
    "set_inference_threads": "gnnff.threads",
    "Topology": "gnnff.chem.topology",
    "build_topology": "gnnff.chem.topology",
}

__all__ = [
    "REQUIRED_TERMS",
    "TERMS",
    "ChemistryError",
    "ForceFieldParameters",
    "GnnffError",
    "InputError",
    "ModelError",
    "ParametrizationError",
    "Parametrized",
    "Topology",
    "__version__",
    "assign_parameters",
    "assign_parameters_many",
    "available_models",
    "build_topology",
    "compute_energy",
    "forces",
    "get_model",
    "load_molecule",
    "parametrize",
    "read_records",
    "register_model",
    "set_inference_threads",
    "to_openmm",
    "to_xml",
    "total_energy",
    "write_xml",
]


def __getattr__(name: str) -> Any:
    """Import on first access (PEP 562) the module defining public name ``name``, or the
    submodule ``gnnff.<name>`` (``gnnff.schema.BONDS`` works after a bare ``import gnnff``)."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(import_module(module), name)
        globals()[name] = value  # later accesses skip this function
        return value
    if not name.startswith("_"):
        try:
            return import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":  # a missing dependency of an existing submodule
                raise
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
