"""The public entry points: a molecule in, parameters or an OpenMM System out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openmm
from rdkit import Chem

from gnnff.export import to_openmm
from gnnff.models import ParameterSource, get_model
from gnnff.molecule import load_molecule
from gnnff.schema import ForceFieldParameters
from gnnff.topology import Topology, build_topology

__all__ = ["Parametrized", "assign_parameters", "parametrize"]


@dataclass(frozen=True, eq=False)
class Parametrized:
    """A molecule with its topology and parameters.

    Attributes
    ----------
    mol
        The prepared RDKit molecule (explicit hydrogens, input atom order).
    topology
        Its topology.
    parameters
        Its MM parameters, float64, rows following ``topology``.
    model
        Name of the parameter source that produced them.
    """

    mol: Chem.Mol
    topology: Topology
    parameters: ForceFieldParameters
    model: str

    def to_openmm(self) -> openmm.System:
        """The OpenMM System (vacuum, no cutoff) of these parameters."""
        return to_openmm(self.topology, self.parameters)


def assign_parameters(molecule: Any, *, model: str | ParameterSource | None = None,
                      name: str | None = None, **model_options: Any) -> Parametrized:
    """Read ``molecule`` and assign parameters with ``model``.

    Parameters
    ----------
    molecule
        RDKit ``Mol``, OpenFF ``Molecule``, SMILES string, or path to a file holding
        one molecule.
    model
        Model name (see :func:`gnnff.models.available_models`) or a ParameterSource;
        None selects :data:`gnnff.models.DEFAULT_MODEL`.
    name
        Name for messages.
    **model_options
        Options of the named model (e.g. ``charges="am1bcc-fast"`` for ``"sage"``).
    """
    source = get_model(model, **model_options)
    mol = load_molecule(molecule, name=name)
    topology = build_topology(mol)
    parameters = source.parameters(mol, topology)
    parameters.validate(topology.counts())
    return Parametrized(mol=mol, topology=topology, parameters=parameters, model=source.name)


def parametrize(molecule: Any, *, model: str | ParameterSource | None = None,
                name: str | None = None, **model_options: Any) -> openmm.System:
    """Parametrize one molecule; return an ``openmm.System`` in the input's atom order.

    See :func:`assign_parameters` for the arguments.

    Examples
    --------
    >>> system = gnnff.parametrize("CCO")  # the shipped default model  # doctest: +SKIP
    >>> system = gnnff.parametrize("CCO", model="sage", charges="am1bcc")  # doctest: +SKIP
    """
    return assign_parameters(molecule, model=model, name=name, **model_options).to_openmm()
