"""gnnff: molecular-mechanics force fields from a graph neural network, exported to OpenMM."""

from gnnff._version import __version__
from gnnff.api import Parametrized, assign_parameters, parametrize
from gnnff.energy import compute_energy, forces, total_energy
from gnnff.errors import (
    ChemistryError,
    GnnffError,
    InputError,
    ModelError,
    ParametrizationError,
)
from gnnff.export import to_openmm, to_xml, write_xml
from gnnff.models import available_models, get_model, register_model
from gnnff.molecule import load_molecule, read_records
from gnnff.schema import TERMS, ForceFieldParameters
from gnnff.topology import Topology, build_topology

__all__ = [
    "__version__",
    "Parametrized",
    "assign_parameters",
    "parametrize",
    "compute_energy",
    "forces",
    "total_energy",
    "GnnffError",
    "InputError",
    "ChemistryError",
    "ParametrizationError",
    "ModelError",
    "to_openmm",
    "to_xml",
    "write_xml",
    "available_models",
    "get_model",
    "register_model",
    "load_molecule",
    "read_records",
    "TERMS",
    "ForceFieldParameters",
    "Topology",
    "build_topology",
]
