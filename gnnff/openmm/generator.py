"""The template generator: gnnff inside ``openmm.app.ForceField``.

Residues without a template are matched by graph against registered molecules, which are
parametrized and loaded as ffxml templates (:mod:`gnnff.openmm.templates`), kept in memory
and optionally on disk (:mod:`gnnff.openmm.cache`).

With openmmforcefields installed the generator is one of its
``SmallMoleculeTemplateGenerator`` s: ``SystemGenerator(small_molecule_forcefield=
"gnnff-industry-v0")`` finds it once this module is imported (openmmforcefields looks
among its base class's direct subclasses). A molecule spanning several residues gets one
template; a residue the generator does not know is left to the next generator registered
with the ForceField.

>>> from openmm import app
>>> generator = GNNFFTemplateGenerator(molecules="ligand.sdf")  # doctest: +SKIP
>>> forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")  # doctest: +SKIP
>>> forcefield.registerTemplateGenerator(generator.generator)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import networkx as nx
import numpy as np
import openmm
import torch
from openmm import app
from openmm.app.element import Element
from rdkit import Chem

from gnnff._version import __version__
from gnnff.api import Parametrized, assign_parameters
from gnnff.chem.molecule import (
    components,
    load_molecule,
    looks_like_path,
    molecule_key,
    name_of,
    net_charge,
    read_records,
)
from gnnff.errors import InputError, ModelError, ParametrizationError
from gnnff.openmm.cache import model_fingerprint, open_cache
from gnnff.openmm.templates import FFXML_VERSION, ffxml, to_openmm_topology
from gnnff.schema import NONBONDED
from gnnff.sources.charges import assign_charges
from gnnff.sources.models import ParameterSource, available_models, get_model

try:  # optional: openmmforcefields' SystemGenerator looks for generators among its base's subclasses
    from openmmforcefields.generators.template_generators import (
        SmallMoleculeTemplateGenerator as _PeerBase,
    )
except ImportError:  # without openmmforcefields the generator works on its own, with ForceField
    _PeerBase = object


__all__ = ["GNNFFTemplateGenerator"]


class _UnknownForceField(ModelError, ValueError):
    """A force field name or file gnnff cannot load. Also a ValueError: the signal on which
    openmmforcefields' ``SystemGenerator`` goes on to the next generator."""


class _ClassProperty:
    """A read-only class attribute computed on access (``INSTALLED_FORCEFIELDS``)."""

    def __init__(self, fget: Any) -> None:
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self.fget(owner if owner is not None else type(obj))


def _installed_forcefields(cls: type) -> list[str]:
    """Force field names the generator answers to: every model of
    :func:`gnnff.sources.models.available_models`, ``gnnff-`` prefixed where its name lacks it."""
    return [name if name.startswith("gnnff") else f"gnnff-{name}" for name in available_models()]


def _model_name(forcefield: Any) -> Any:
    """The model behind a force field name: ``gnnff-sage`` is model ``sage``."""
    if isinstance(forcefield, str) and forcefield.startswith("gnnff-"):
        known = available_models()
        if forcefield not in known and forcefield[len("gnnff-"):] in known:
            return forcefield[len("gnnff-"):]
    return forcefield


class _Entry(NamedTuple):
    """A registered molecule: prepared molecule, its graph, user charges ``(n_atoms,)`` in e or None."""

    mol: Chem.Mol
    graph: nx.Graph
    charges: np.ndarray | None


def _graph_of_mol(mol: Chem.Mol) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from((a.GetIdx(), {"z": a.GetAtomicNum()}) for a in mol.GetAtoms())
    graph.add_edges_from((b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds())
    return graph


def _whole_molecule(residue: app.topology.Residue) -> tuple[list[app.topology.Residue], nx.Graph | None]:
    """The residues of the molecule ``residue`` belongs to (itself, or every residue joined
    to it by bonds: a capped peptide, a ligand split over residues), as OpenMM's ForceField
    merges them, and that molecule's graph (None when an atom has no element)."""
    bonds = list(residue.chain.topology.bonds())
    joined: dict[Any, set] = defaultdict(set)
    for a, b in bonds:
        if a.residue is not b.residue:
            joined[a.residue].add(b.residue)
            joined[b.residue].add(a.residue)
    found, stack = {residue}, [residue]
    while stack:
        for other in joined.get(stack.pop(), ()):
            if other not in found:
                found.add(other)
                stack.append(other)
    residues = sorted(found, key=lambda r: r.index)
    atoms = [a for r in residues for a in r.atoms()]
    if any(a.element is None for a in atoms):
        return residues, None
    index = {a: i for i, a in enumerate(atoms)}
    graph = nx.Graph()
    graph.add_nodes_from((i, {"z": a.element.atomic_number}) for i, a in enumerate(atoms))
    graph.add_edges_from((index[a], index[b]) for a, b in bonds if a in index and b in index)
    return residues, graph


def _label(residues: list[app.topology.Residue]) -> str:
    first, last = residues[0], residues[-1]
    if len(residues) == 1:
        return f"residue {first.name} {first.id} (chain {first.chain.id})"
    return (f"residues {first.name} {first.id} to {last.name} {last.id} (chain {first.chain.id}; one molecule "
            f"of {len(residues)} residues)")


def _formula(counts: Counter) -> str:
    return "".join(f"{Element.getByAtomicNumber(z).symbol}{n}" for z, n in sorted(counts.items()))


def _user_charges(item: Any, mol: Chem.Mol) -> np.ndarray | None:
    """The partial charges (e, in atom order) set on an OpenFF ``Molecule``, or None when
    it has none or all are zero (openmmforcefields' convention for "no user charges")."""
    if not type(item).__module__.startswith("openff.toolkit") or getattr(item, "partial_charges", None) is None:
        return None
    charges = np.asarray(item.partial_charges.m_as("elementary_charge"), dtype=np.float64)
    if np.allclose(charges, 0.0):
        return None
    if charges.shape != (mol.GetNumAtoms(),):
        raise InputError(f"{name_of(mol)}: {charges.size} partial charges for {mol.GetNumAtoms()} atoms; "
                         "set one charge per atom, or partial_charges = None for gnnff's charges")
    return charges


def _warn_charge_sum(mol: Chem.Mol, charges: np.ndarray) -> None:
    total, net = float(charges.sum()), net_charge(mol)
    if abs(total - net) > 1e-5:
        # worded as openmmforcefields' own generators word it (scripts and tests match on it)
        warnings.warn(f"Sum of user-provided partial charges {total} does not match formal charge {float(net)} "
                      f"({name_of(mol)}: the charges are used as given; correct them, or set partial_charges = "
                      "None for gnnff's charges)", UserWarning, stacklevel=3)


def _with_charges(result: Parametrized, charges: np.ndarray) -> Parametrized:
    """``result`` with its partial charges replaced by ``charges`` (e)."""
    parameters = result.parameters.map(
        lambda term, name, x: torch.as_tensor(charges, dtype=x.dtype) if (term is NONBONDED and name == "charge")
        else x)
    return Parametrized(result.mol, result.topology, parameters, result.model)


class _NotAnOffxml(logging.Filter):
    """Drops the error that openmmforcefields' SMIRNOFF generator logs when it cannot read a
    gnnff model name as an ``.offxml`` file: ``SystemGenerator`` tries that generator before
    gnnff's and goes on to gnnff's, so the 9-line message is alarming and harmless. Only that
    message, and only for names gnnff answers to, is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if not message.startswith("Source '"):
            return True
        source = message[len("Source '"):].split("'", 1)[0]
        return not (source.endswith(".pt") or _model_name(source) in available_models())


def _quiet_smirnoff_generator() -> None:
    logger = logging.getLogger("openmmforcefields.generators.template_generators")
    if not any(isinstance(f, _NotAnOffxml) for f in logger.filters):
        logger.addFilter(_NotAnOffxml())


#: ``template_generator_kwargs["charge_method"]`` values of openmmforcefields' espaloma generator
#: (and their spellings) -> (use the molecule's own charges, charge method in place of the model's)
PEER_CHARGE_METHODS: dict[str, tuple[bool, str | None]] = {
    "nn": (False, None), "model": (False, None),
    "from-molecule": (True, None), "from_molecule": (True, None),
    "am1-bcc": (False, "am1bcc"), "am1bcc": (False, "am1bcc"),
}


def _peer_options(kwargs: dict | None, user_charges: bool) -> tuple[dict, bool, str | None]:
    """Split ``template_generator_kwargs`` into (model options, user charges, charge method):
    the peers' ``charge_method`` is mapped where it means what a gnnff option means."""
    options = dict(kwargs or {})
    method = options.pop("charge_method", None)
    if method is None:
        return options, user_charges, None
    if method not in PEER_CHARGE_METHODS:
        raise InputError(f"template_generator_kwargs: charge_method {method!r} is not one gnnff can give; "
                         f"use one of {', '.join(sorted(PEER_CHARGE_METHODS))} (nn: the model's charges, "
                         "from-molecule: the molecule's own, am1-bcc: AM1-BCC through AmberTools)")
    own, charges = PEER_CHARGE_METHODS[method]
    return options, own, charges


class GNNFFTemplateGenerator(_PeerBase):
    """Residue template generator for ``openmm.app.ForceField``, backed by a gnnff model.

    Residues without a template are matched against the registered molecules by graph
    (elements and bonds; any atom order, any atom names). A residue bonded to others
    (a capped peptide, a ligand split over residues) is matched as the whole molecule
    it belongs to, and that molecule gets one template. A match is parametrized with
    the model and loaded as an ffxml template; a residue no registered molecule has is
    left to the next generator (``generator`` returns False).

    When openmmforcefields is installed the class is one of its
    ``SmallMoleculeTemplateGenerator`` s, so ``SystemGenerator(...,
    small_molecule_forcefield="gnnff-industry-v0")`` finds it once ``gnnff.openmm`` has
    been imported; the names it answers to are :attr:`INSTALLED_FORCEFIELDS`.

    Parameters
    ----------
    molecules
        Molecules the generator may parametrize: one or a list of RDKit ``Mol``,
        OpenFF ``Molecule``, SMILES or molecule file (every record of an SDF/MOL2/SMI
        file). A multi-component record (a salt) registers each component, since each is
        its own residue. More can be added with :meth:`add_molecules`.
    forcefield
        Model name (one of :attr:`INSTALLED_FORCEFIELDS`, or a name of
        :func:`gnnff.sources.models.available_models`), checkpoint path or ParameterSource;
        default gnnff's default model. ``model`` is the same option under its older name.
    cache
        Optional on-disk cache of ffxml templates, keyed by molecule, charges and model: a
        folder (one file per template, written atomically) or a single ``.json`` file
        (openmmforcefields' format, e.g. ``"db.json"``; locked while read or written). Both
        can be shared by several processes.
    template_generator_kwargs
        What ``SystemGenerator(template_generator_kwargs=...)`` passes on: the keys users of
        openmmforcefields' espaloma generator pass where they mean a gnnff option
        (``charge_method``: ``"nn"`` the model's charges, ``"from-molecule"`` the molecule's
        own partial charges, ``"am1-bcc"`` AM1-BCC through AmberTools; see
        :data:`PEER_CHARGE_METHODS`), and otherwise options of the model, e.g.
        ``{"charges": "mmff94"}`` for ``"gnnff-sage"``. A key neither knows is a one-line
        error that lists what the model accepts.
    user_charges
        Use the non-zero ``partial_charges`` of an OpenFF ``Molecule`` (as
        openmmforcefields' generators do; a warning when they do not sum to the net charge)
        instead of the model's. False: always the model's.
    **model_options
        More options of the model.

    Attributes
    ----------
    debug_ffxml_filename
        None, or a file to which each template is written when it is loaded.

    Examples
    --------
    >>> generator = GNNFFTemplateGenerator(molecules=["CCO", "ligand.sdf"])  # doctest: +SKIP
    >>> forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")  # doctest: +SKIP
    >>> forcefield.registerTemplateGenerator(generator.generator)  # doctest: +SKIP
    >>> system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.PME)  # doctest: +SKIP
    """

    INSTALLED_FORCEFIELDS = _ClassProperty(_installed_forcefields)

    def __init__(self, molecules: Any = None, *, forcefield: str | ParameterSource | None = None,
                 cache: str | os.PathLike | None = None, template_generator_kwargs: dict | None = None,
                 model: str | ParameterSource | None = None, user_charges: bool = True,
                 **model_options: Any) -> None:
        if forcefield is not None and model is not None and forcefield is not model and forcefield != model:
            raise ModelError(f"forcefield={forcefield!r} and model={model!r} disagree; give one of them "
                             "(model= is the older name of forcefield=)")
        name = forcefield if forcefield is not None else model
        options, user_charges, self._charge_method = _peer_options(template_generator_kwargs, user_charges)
        try:
            self.source = get_model(_model_name(name), **{**options, **model_options})
        except ModelError as err:
            if options and "takes no options" in str(err):
                raise InputError(f"template_generator_kwargs {sorted(options)}: model {name!r} "
                                 "takes no options; gnnff accepts charge_method (nn, from-molecule, am1-bcc)") from None
            raise _UnknownForceField(str(err)) from None
        self._forcefield = name if isinstance(name, str) else self.source.name
        self.user_charges = user_charges
        self.cache = Path(cache) if cache is not None else None
        self._store = open_cache(cache) if cache is not None else None
        self.debug_ffxml_filename: str | os.PathLike | None = None
        self._fingerprint: str | None = None
        #: key (canonical SMILES) -> registered molecule, in order of addition
        self._registered: dict[str, _Entry] = {}
        self._ffxml: dict[str, str] = {}
        self.add_molecules(molecules)

    @property
    def model(self) -> str:
        """Name of the parameter source."""
        return self.source.name

    @property
    def forcefield(self) -> str:
        """The force field (model) name as given, e.g. ``"gnnff-industry-v0"``."""
        return self._forcefield

    @property
    def molecules(self) -> list[Chem.Mol]:
        """The registered molecules (prepared RDKit molecules), in order of addition."""
        return [entry.mol for entry in self._registered.values()]

    def add_molecules(self, molecules: Any = None) -> None:
        """Register more molecules (same forms as the ``molecules`` argument). A molecule
        registered before keeps its first registration (and charges).

        Raises
        ------
        GnnffError
            A molecule cannot be read; its file, record and the reason are named.
        """
        if molecules is None:
            return
        if isinstance(molecules, (str, os.PathLike)) or not isinstance(molecules, Iterable):
            molecules = [molecules]
        for item in molecules:
            for record, charges in self._read(item):
                # A salt or solvate is several residues in a topology: register each component.
                for indices, mol in components(record):
                    part = None if charges is None else charges[indices]
                    key = molecule_key(mol)
                    if key not in self._registered:
                        if part is not None:
                            _warn_charge_sum(mol, part)
                        self._registered[key] = _Entry(mol, _graph_of_mol(mol), part)

    def _read(self, item: Any) -> list[tuple[Chem.Mol, np.ndarray | None]]:
        if isinstance(item, (str, os.PathLike)) and looks_like_path(str(item)):
            mols = []
            for record in read_records(item):
                if record.error is not None:
                    raise record.error
                mols.append((record.mol, None))
            return mols
        mol = load_molecule(item)
        return [(mol, _user_charges(item, mol) if self.user_charges else None)]

    def generator(self, forcefield: app.ForceField, residue: app.topology.Residue) -> bool:
        """The function to pass to ``ForceField.registerTemplateGenerator``.

        Returns True after loading a template for the molecule ``residue`` belongs to,
        False when no registered molecule is that molecule (so other generators can try).
        A registered molecule with its heavy atoms but other hydrogens, or its atoms but
        other bonds, gives a warning that names the residue and what differs.

        Raises
        ------
        ParametrizationError
            The ForceField's 1-4 scales are not gnnff's.
        """
        residues, graph = _whole_molecule(residue)
        if graph is None:
            return False
        label = _label(residues)
        key = self._match(graph, label)
        if key is None:
            return False
        text = self._template(key)
        if self.debug_ffxml_filename is not None:
            Path(self.debug_ffxml_filename).write_text(text, encoding="utf-8")
        try:
            forcefield.loadFile(io.StringIO(text))
        except ValueError as err:
            if "1-4" in str(err):
                raise ParametrizationError(
                    f"{label}: gnnff templates use the Amber 1-4 scales (Coulomb 1/1.2, LJ 1/2) but the "
                    f"ForceField declares others; combine gnnff with Amber force fields (e.g. amber14-all.xml)"
                ) from None
            raise
        return True

    def _match(self, graph: nx.Graph, label: str) -> str | None:
        """Key of the registered molecule whose graph is ``graph``'s, else None (with a
        warning when one nearly is)."""
        counts = Counter(nx.get_node_attributes(graph, "z").values())
        heavy = Counter({z: n for z, n in counts.items() if z != 1})
        near = None
        for key, entry in self._registered.items():
            ref_counts = Counter(nx.get_node_attributes(entry.graph, "z").values())
            if ref_counts == counts:
                if nx.is_isomorphic(graph, entry.graph, node_match=lambda a, b: a["z"] == b["z"]):
                    return key
                near = near or (entry.mol, ("the same atoms but different bonds (is the ligand missing CONECT "
                                            "records? build the topology from the molecule file instead)"))
            elif Counter({z: n for z, n in ref_counts.items() if z != 1}) == heavy:
                near = near or (entry.mol, (f"the same heavy atoms but {ref_counts[1]} hydrogens instead of "
                                            f"{counts[1]} (add the hydrogens the molecule has, or register the "
                                            f"protonation state you simulate)"))
        if near is not None:
            mol, why = near
            warnings.warn(f"gnnff: {label} ({_formula(counts)}) matches no registered molecule: molecule "
                          f"'{name_of(mol, molecule_key(mol))}' has {why}", UserWarning, stacklevel=3)
        return None

    def _template(self, key: str) -> str:
        """The ffxml of registered molecule ``key``: from memory, the cache, or the model."""
        if key in self._ffxml:
            return self._ffxml[key]
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.source)
        entry = self._registered[key]
        what = f"{FFXML_VERSION}|{__version__}|{self._fingerprint}|{key}"
        if entry.charges is not None:  # user charges: their own templates
            what += "|charges:" + hashlib.sha256(entry.charges.tobytes()).hexdigest()
        elif self._charge_method is not None:
            what += f"|charge_method:{self._charge_method}"
        digest = hashlib.sha256(what.encode()).hexdigest()
        text = self._store.get(digest) if self._store is not None else None
        if text is None:
            result = assign_parameters(entry.mol, model=self.source, name=name_of(entry.mol, key))
            if entry.charges is not None:
                result = _with_charges(result, entry.charges)
            elif self._charge_method is not None:
                result = _with_charges(result, assign_charges(entry.mol, self._charge_method))
            text = ffxml(result, template_name=f"gnnff-{digest[:12]}")
            if self._store is not None:
                self._store.put(digest, key, text)
        self._ffxml[key] = text
        return text

    def get_openmm_system(self, molecule: Any) -> openmm.System | None:
        """The System (vacuum, no cutoff, no constraints) of ``molecule``'s template, in
        ``molecule``'s atom order, or None when this generator has not made its template
        yet (openmmforcefields' convention; for tests and checks).

        Parameters
        ----------
        molecule
            Any form :func:`gnnff.load_molecule` reads (OpenFF ``Molecule``, RDKit
            ``Mol``, SMILES, file).
        """
        mol = load_molecule(molecule)
        text = self._ffxml.get(molecule_key(mol))
        if text is None:
            return None
        return app.ForceField(io.StringIO(text)).createSystem(
            to_openmm_topology(mol), nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
            removeCMMotion=False)


if _PeerBase is not object:
    # The one change to another package's state: a filter on openmmforcefields' generator
    # logger that drops only its "cannot read '<gnnff model>' as an offxml" error (see
    # _NotAnOffxml); SystemGenerator logs it before it reaches gnnff's generator.
    _quiet_smirnoff_generator()
