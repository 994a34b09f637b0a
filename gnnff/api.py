"""The public entry points: a molecule in, parameters or an OpenMM System out.

Salts and other multi-component inputs are parametrized as one System in the input's
atom order, each connected component on its own: no term spans two components and
every component keeps its own net charge exactly (charge never flows between ions).
Many molecules go through :func:`assign_parameters_many`, which hands a parameter
source that can batch (:class:`gnnff.sources.models.BatchedParameterSource`, e.g. a trained
GNN) several molecules per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import openmm
import torch
from rdkit import Chem

from gnnff.chem.molecule import check_elements, components, load_molecule, name_of
from gnnff.chem.topology import Topology, atom_budget_chunks, build_topology
from gnnff.errors import GnnffError, ParametrizationError
from gnnff.mm.export import to_openmm
from gnnff.schema import TERMS, ForceFieldParameters
from gnnff.sources.classical import SAGE_ELEMENTS
from gnnff.sources.models import BatchedParameterSource, ParameterSource, get_model

__all__ = ["Parametrized", "assign_parameters", "assign_parameters_many", "parametrize"]

#: Atoms per network call in :func:`assign_parameters_many` (a larger molecule goes alone).
BATCH_ATOMS = 512


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
        Model name (see :func:`gnnff.sources.models.available_models`) or a ParameterSource;
        None selects :data:`gnnff.sources.models.DEFAULT_MODEL`.
    name
        Name for messages.
    **model_options
        Options of the named model (e.g. ``charges="am1bcc-fast"`` for ``"sage"`` or ``"sage-2.3"``).
    """
    source = get_model(model, **model_options)
    mol = load_molecule(molecule, name=name)
    (result,) = _assign(source, [mol], [_label(mol, name)], batch_atoms=0)
    if isinstance(result, GnnffError):
        raise result
    return result


def assign_parameters_many(molecules: Iterable[Any], *, model: str | ParameterSource | None = None,
                           names: Sequence[str] | None = None, batch_atoms: int = BATCH_ATOMS,
                           **model_options: Any) -> list[Parametrized | GnnffError]:
    """Assign parameters to many molecules; a bad molecule does not stop the others.

    Each result equals :func:`assign_parameters` of that molecule alone (to float
    rounding): a batching source sees up to ``batch_atoms`` atoms per call, but
    molecules never interact inside a batch.

    Parameters
    ----------
    molecules
        Anything :func:`assign_parameters` reads, one molecule each.
    model, **model_options
        As for :func:`assign_parameters`; resolved once.
    names
        Names for messages, one per molecule (default: each molecule's own name).
    batch_atoms
        Atoms per call of a batching source; 0 sends molecules one at a time.

    Returns
    -------
    list
        Per molecule, in input order: its :class:`Parametrized`, or the
        :class:`gnnff.GnnffError` met while reading or parametrizing it.
    """
    source = get_model(model, **model_options)
    molecules = list(molecules)
    if names is not None and len(names) != len(molecules):
        raise ValueError(f"{len(names)} names for {len(molecules)} molecules")
    mols: list[Chem.Mol | GnnffError] = []
    for i, molecule in enumerate(molecules):
        try:
            mols.append(load_molecule(molecule, name=names[i] if names is not None else None))
        except GnnffError as err:
            mols.append(err)
    good = [i for i, mol in enumerate(mols) if not isinstance(mol, GnnffError)]
    labels = [_label(mols[i], names[i] if names is not None else None) for i in good]
    out: list[Parametrized | GnnffError] = list(mols)  # errors stay, molecules are replaced
    for i, result in zip(good, _assign(source, [mols[i] for i in good], labels, batch_atoms=batch_atoms)):
        out[i] = result
    return out


def assign_prepared(mols: Sequence[Chem.Mol], labels: Sequence[str], *,
                    model: str | ParameterSource | None = None,
                    batch_atoms: int = BATCH_ATOMS) -> list[Parametrized | GnnffError]:
    """:func:`assign_parameters_many` of molecules that :func:`load_molecule` has prepared
    already (the batch runner reads every record that way): the same results, without
    sanitizing and perceiving stereochemistry a second time. ``labels`` name them in messages."""
    return _assign(get_model(model), list(mols), list(labels), batch_atoms=batch_atoms)


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


def _label(mol: Chem.Mol, name: str | None) -> str:
    return name or name_of(mol)


@dataclass(frozen=True, eq=False)
class _Unit:
    """One connected component to parametrize: which molecule, which of its atoms."""

    owner: int
    indices: np.ndarray
    mol: Chem.Mol
    topology: Topology
    label: str


def _assign(source: ParameterSource, mols: Sequence[Chem.Mol], labels: Sequence[str], *,
            batch_atoms: int) -> list[Parametrized | GnnffError]:
    """Parametrize prepared molecules component by component, batching when the source can."""
    topologies, units = _units(source, mols, labels)
    by_owner: dict[int, list[tuple[_Unit, ForceFieldParameters | GnnffError]]] = {}
    for unit, result in zip(units, _unit_parameters(source, units, batch_atoms)):
        by_owner.setdefault(unit.owner, []).append((unit, result))
    out: list[Parametrized | GnnffError] = []
    for owner, (mol, label) in enumerate(zip(mols, labels)):
        topology = topologies[owner]
        if isinstance(topology, GnnffError):
            out.append(topology)
            continue
        done = by_owner[owner]
        error = next((r for _, r in done if isinstance(r, GnnffError)), None)
        if error is not None:
            out.append(error)
            continue
        try:
            parameters = done[0][1] if len(done) == 1 else _assemble(topology, done)
            parameters.validate(topology.counts())
        except ValueError as err:
            out.append(ParametrizationError(f"{label}: model '{source.name}' returned malformed parameters ({err})"))
            continue
        out.append(Parametrized(mol=mol, topology=topology, parameters=parameters, model=source.name))
    return out


def _units(source: ParameterSource, mols: Sequence[Chem.Mol],
           labels: Sequence[str]) -> tuple[list[Topology | GnnffError], list[_Unit]]:
    """Each molecule's topology (or error) and the connected components to parametrize.

    A source that declares its ``elements`` has them checked on the whole input first,
    so the message names the atom by its index in the input, not in a component.
    """
    topologies: list[Topology | GnnffError] = []
    units: list[_Unit] = []
    elements = getattr(source, "elements", None)
    for owner, (mol, label) in enumerate(zip(mols, labels)):
        try:
            topology = build_topology(mol)
            parts = components(mol)
            if len(parts) > 1 and elements is not None:
                check_elements(mol, frozenset(elements), label=label, owner=f"model '{source.name}'",
                               ions_only=frozenset(getattr(source, "ions_only", ())), shipped=SAGE_ELEMENTS)
        except GnnffError as err:
            topologies.append(err)
            continue
        topologies.append(topology)
        if len(parts) == 1:
            units.append(_Unit(owner, parts[0][0], mol, topology, label))
            continue
        for k, (indices, part) in enumerate(parts, start=1):
            part_label = f"{label} component {k} of {len(parts)}"
            part.SetProp("_Name", part_label)
            units.append(_Unit(owner, indices, part, build_topology(part), part_label))
    return topologies, units


def _unit_parameters(source: ParameterSource, units: Sequence[_Unit],
                     batch_atoms: int) -> list[ForceFieldParameters | GnnffError]:
    """Parameters of every unit: batches of about ``batch_atoms`` atoms, or one at a time."""
    if not isinstance(source, BatchedParameterSource) or batch_atoms <= 0:
        return [_one(source, unit) for unit in units]
    out: list[ForceFieldParameters | GnnffError] = []
    for part in atom_budget_chunks([u.topology.n_atoms for u in units], batch_atoms):
        chunk = units[part]
        out += source.parameters_batch([u.mol for u in chunk], [u.topology for u in chunk],
                                       [u.label for u in chunk])
    return out


def _one(source: ParameterSource, unit: _Unit) -> ForceFieldParameters | GnnffError:
    try:
        return source.parameters(unit.mol, unit.topology)
    except GnnffError as err:
        return err


def _assemble(topology: Topology, parts: Sequence[tuple[_Unit, ForceFieldParameters]]) -> ForceFieldParameters:
    """Parameters of a whole multi-component molecule from those of its components.

    Component atoms keep their relative order, so each component tuple maps to the
    identical tuple of the whole topology; rows are matched by sorting both lists. An
    optional term that some components' source provides and others' does not is zero in
    the latter.
    """
    terms = [t for t in TERMS if any(p.has(t) for _, p in parts)]
    dtype = parts[0][1].nonbonded.charge.dtype
    parts = [(unit, p.replace(**{t.name: t.zeros(unit.topology.counts()[t.name], dtype)
                                 for t in terms if not p.has(t)})) for unit, p in parts]
    fields: dict[str, dict[str, torch.Tensor]] = {}
    for term in terms:
        whole = topology.indices(term)
        glued = np.concatenate([unit.indices[unit.topology.indices(term)] for unit, _ in parts])
        if whole.shape != glued.shape:
            raise ValueError(f"components do not add up to the molecule ({term.name})")
        rows = np.empty(len(whole), dtype=np.int64)
        rows[np.lexsort(whole.T[::-1])] = np.lexsort(glued.T[::-1])
        if not np.array_equal(glued[rows], whole):
            raise ValueError(f"components do not add up to the molecule ({term.name})")
        take = torch.as_tensor(rows)
        fields[term.name] = {
            f.name: torch.cat([getattr(p.term(term), f.name) for _, p in parts])[take] for f in term.fields()
        }
    return ForceFieldParameters(**{term.name: term.parameters(**fields[term.name]) for term in terms})
