"""gnnff inside the OpenMM application layer: ffxml residue templates and a template
generator for ``openmm.app.ForceField``.

A ligand parametrized by gnnff becomes an ffxml residue template with one atom type
per atom (types carry the molecule's key, so templates of different molecules never
share a type) and a bond, angle, proper, improper and nonbonded entry per term of the
schema. Impropers use OpenMM's ``ordering="smirnoff"``: for a template improper
``(c, a, b, d)`` OpenMM adds the torsions ``(c, a, b, d)``, ``(c, b, d, a)``,
``(c, d, a, b)``, which is gnnff's trefoil, each with the ``k / 3`` written in the
file. Nonbonded entries declare 1-4 scales 1/1.2 (Coulomb) and 1/2 (LJ), the Amber
values, so the template loads beside ``amber14-all.xml`` / ``amber14/tip3p.xml`` and
the ligand's Lennard-Jones parameters combine with the protein's and water's by
Lorentz-Berthelot in one ``NonbondedForce``.

>>> from openmm import app
>>> generator = GNNFFTemplateGenerator(molecules="ligand.sdf")  # doctest: +SKIP
>>> forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")  # doctest: +SKIP
>>> forcefield.registerTemplateGenerator(generator.generator)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import networkx as nx
from openmm import app
from openmm.app.element import Element
from rdkit import Chem

from gnnff._version import __version__
from gnnff.api import Parametrized, assign_parameters
from gnnff.errors import ParametrizationError
from gnnff.export import atomic_write_text
from gnnff.models import ParameterSource, get_model
from gnnff.molecule import (
    components,
    load_molecule,
    looks_like_path,
    name_of,
    read_records,
)
from gnnff.schema import (
    ANGLES,
    BONDS,
    COULOMB_14_SCALE,
    IMPROPERS,
    LJ_14_SCALE,
    NONBONDED,
    PROPERS,
)

__all__ = ["GNNFFTemplateGenerator", "ffxml", "molecule_key", "to_openmm_topology"]

#: Bumped whenever the ffxml written for the same parameters changes.
FFXML_VERSION = 1


def _f(x: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(x))


def atom_names(mol: Chem.Mol) -> list[str]:
    """Unique atom names: the input's PDB names when present and unique, else element
    symbol + running number per element (``C1``, ``C2``, ``H1`` ...)."""
    names = []
    for atom in mol.GetAtoms():
        info = atom.GetPDBResidueInfo()
        names.append(info.GetName().strip() if info is not None else "")
    if all(names) and len(set(names)) == len(names):
        return names
    count: Counter[str] = Counter()
    names = []
    for atom in mol.GetAtoms():
        count[atom.GetSymbol()] += 1
        names.append(f"{atom.GetSymbol()}{count[atom.GetSymbol()]}")
    return names


def to_openmm_topology(mol: Chem.Mol, *, residue_name: str = "LIG") -> app.Topology:
    """One chain, one residue holding ``mol``'s atoms in order, with its bonds.

    Parameters
    ----------
    mol
        Prepared RDKit molecule (explicit hydrogens).
    residue_name
        Residue name (PDB files keep 3 characters).
    """
    _BOND_TYPES = {Chem.BondType.SINGLE: app.Single, Chem.BondType.DOUBLE: app.Double,
                   Chem.BondType.TRIPLE: app.Triple, Chem.BondType.AROMATIC: app.Aromatic}
    topology = app.Topology()
    residue = topology.addResidue(residue_name, topology.addChain())
    atoms = [topology.addAtom(name, Element.getByAtomicNumber(a.GetAtomicNum()), residue)
             for name, a in zip(atom_names(mol), mol.GetAtoms())]
    for bond in mol.GetBonds():
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()],
                         type=_BOND_TYPES.get(bond.GetBondType()), order=int(bond.GetBondTypeAsDouble()) or None)
    return topology


def molecule_key(mol: Chem.Mol) -> str:
    """Atom-order independent key of a prepared molecule: canonical isomeric SMILES
    with explicit hydrogens and formal charges."""
    return Chem.MolToSmiles(mol, isomericSmiles=True, allHsExplicit=False)


def model_fingerprint(source: ParameterSource) -> str:
    """What identifies a parameter source for caching: the checkpoint's SHA-256 for a
    trained model, else its ``repr`` (name and options)."""
    path = getattr(source, "path", None)
    if path is not None and Path(path).is_file():
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return repr(source)


def ffxml(result: Parametrized, *, template_name: str | None = None) -> str:
    """The ffxml (``openmm.app.ForceField`` file) of one parametrized molecule.

    Parameters
    ----------
    result
        From :func:`gnnff.assign_parameters`.
    template_name
        Residue template name, also the prefix of the atom types; default
        ``gnnff-`` + 12 hex digits of the molecule key and model.

    Returns
    -------
    str
        XML text: atom types, one residue template, HarmonicBondForce,
        HarmonicAngleForce, PeriodicTorsionForce (propers and smirnoff-ordered
        impropers) and NonbondedForce entries. Loaded into a ForceField and applied to
        the molecule it gives the energy of ``result.to_openmm()`` (with propers and
        impropers in one force).
    """
    mol, topology = result.mol, result.topology
    if template_name is None:
        digest = hashlib.sha256(f"{molecule_key(mol)}|{result.model}".encode()).hexdigest()
        template_name = f"gnnff-{digest[:12]}"
    values = result.parameters.map(lambda term, name, x: x.detach().cpu().double().numpy())
    types = [f"{template_name}-{i}" for i in range(topology.n_atoms)]
    names = atom_names(mol)

    root = ET.Element("ForceField")
    ET.SubElement(root, "Info").append(_comment(result))
    atom_types = ET.SubElement(root, "AtomTypes")
    for t, z in zip(types, topology.atomic_numbers.tolist()):
        element = Element.getByAtomicNumber(z)
        ET.SubElement(atom_types, "Type", name=t, attrib={"class": t}, element=element.symbol,
                      mass=_f(element.mass._value))
    nonbonded = values.term(NONBONDED)
    residue = ET.SubElement(ET.SubElement(root, "Residues"), "Residue", name=template_name)
    for name, t, q in zip(names, types, nonbonded.charge.tolist()):
        ET.SubElement(residue, "Atom", name=name, type=t, charge=_f(q))
    for i, j in topology.bonds.tolist():
        ET.SubElement(residue, "Bond", atomName1=names[i], atomName2=names[j])

    force = ET.SubElement(root, "HarmonicBondForce")
    p = values.term(BONDS)
    for (i, j), length, k in zip(topology.bonds.tolist(), p.length.tolist(), p.k.tolist()):
        ET.SubElement(force, "Bond", type1=types[i], type2=types[j], length=_f(length), k=_f(k))
    force = ET.SubElement(root, "HarmonicAngleForce")
    p = values.term(ANGLES)
    for (i, j, k), angle, kk in zip(topology.angles.tolist(), p.angle.tolist(), p.k.tolist()):
        ET.SubElement(force, "Angle", type1=types[i], type2=types[j], type3=types[k], angle=_f(angle), k=_f(kk))
    force = ET.SubElement(root, "PeriodicTorsionForce", ordering="smirnoff")
    for term, tag in ((PROPERS, "Proper"), (IMPROPERS, "Improper")):
        p = values.term(term)
        share = 1.0 / len(term.expansion)
        for row, ks, phases in zip(topology.indices(term).tolist(), p.k.tolist(), p.phase.tolist()):
            attrib = {f"type{m + 1}": types[a] for m, a in enumerate(row)}
            slot = 0
            for n, k, phase in zip(term.periodicities, ks, phases):
                if k != 0.0:
                    slot += 1
                    attrib.update({f"periodicity{slot}": str(n), f"phase{slot}": _f(phase),
                                   f"k{slot}": _f(share * k)})
            if slot:
                ET.SubElement(force, tag, attrib=attrib)
    force = ET.SubElement(root, "NonbondedForce", coulomb14scale=_f(COULOMB_14_SCALE), lj14scale=_f(LJ_14_SCALE))
    ET.SubElement(force, "UseAttributeFromResidue", name="charge")
    for t, sigma, eps in zip(types, nonbonded.sigma.tolist(), nonbonded.epsilon.tolist()):
        ET.SubElement(force, "Atom", type=t, sigma=_f(sigma), epsilon=_f(eps))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _comment(result: Parametrized) -> ET.Element:
    source = ET.Element("Source")
    source.text = (f"gnnff {__version__}, model {result.model}, molecule {molecule_key(result.mol)}; "
                   "1-4 scales Coulomb 1/1.2, LJ 1/2; Lorentz-Berthelot")
    return source


def _graph_of_mol(mol: Chem.Mol) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from((a.GetIdx(), {"z": a.GetAtomicNum()}) for a in mol.GetAtoms())
    graph.add_edges_from((b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds())
    return graph


def _graph_of_residue(residue: app.topology.Residue) -> nx.Graph | None:
    atoms = list(residue.atoms())
    if any(a.element is None for a in atoms):
        return None
    index = {a: i for i, a in enumerate(atoms)}
    graph = nx.Graph()
    graph.add_nodes_from((i, {"z": a.element.atomic_number}) for i, a in enumerate(atoms))
    graph.add_edges_from((index[a], index[b]) for a, b in residue.internal_bonds())
    return graph


def _formula(counts: Counter) -> str:
    return "".join(f"{Element.getByAtomicNumber(z).symbol}{n}" for z, n in sorted(counts.items()))


class GNNFFTemplateGenerator:
    """Residue template generator for ``openmm.app.ForceField``, backed by a gnnff model.

    Residues without a template are matched against the registered molecules by
    graph (elements and bonds; any atom order, any atom names); a match is
    parametrized with ``model`` and loaded as an ffxml template.

    Parameters
    ----------
    molecules
        Molecules the generator may parametrize: one or a list of RDKit ``Mol``,
        OpenFF ``Molecule``, SMILES or molecule file (every record of an SDF/MOL2/SMI
        file). A multi-component record (a salt) registers each component, since each is
        its own residue. More can be added with :meth:`add_molecules`.
    model
        Model name, checkpoint path or ParameterSource (default: gnnff's default).
    cache
        Optional folder for an on-disk cache of ffxml templates, keyed by molecule
        and model (files written atomically, so two processes can share it).
    **model_options
        Options of the named model (e.g. ``charges="am1bcc-fast"`` for ``"sage"``).

    Examples
    --------
    >>> generator = GNNFFTemplateGenerator(molecules=["CCO", "ligand.sdf"])  # doctest: +SKIP
    >>> forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")  # doctest: +SKIP
    >>> forcefield.registerTemplateGenerator(generator.generator)  # doctest: +SKIP
    >>> system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.PME)  # doctest: +SKIP
    """

    def __init__(self, molecules: Any = None, *, model: str | ParameterSource | None = None,
                 cache: str | os.PathLike | None = None, **model_options: Any) -> None:
        self.source = get_model(model, **model_options)
        self.cache = Path(cache) if cache is not None else None
        if self.cache is not None:
            self.cache.mkdir(parents=True, exist_ok=True)
        self._fingerprint: str | None = None
        #: key (canonical SMILES) -> (molecule, its graph), in order of addition
        self._registered: dict[str, tuple[Chem.Mol, nx.Graph]] = {}
        self._ffxml: dict[str, str] = {}
        self.add_molecules(molecules)

    @property
    def model(self) -> str:
        """Name of the parameter source."""
        return self.source.name

    @property
    def molecules(self) -> list[Chem.Mol]:
        """The registered molecules (prepared RDKit molecules), in order of addition."""
        return [mol for mol, _ in self._registered.values()]

    def add_molecules(self, molecules: Any) -> None:
        """Register more molecules (same forms as the ``molecules`` argument).

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
            for record in self._read(item):
                # A salt or solvate is several residues in a topology: register each component.
                for _, mol in components(record):
                    self._registered.setdefault(molecule_key(mol), (mol, _graph_of_mol(mol)))

    @staticmethod
    def _read(item: Any) -> list[Chem.Mol]:
        if isinstance(item, (str, os.PathLike)) and looks_like_path(str(item)):
            mols = []
            for record in read_records(item):
                if record.error is not None:
                    raise record.error
                mols.append(record.mol)
            return mols
        return [load_molecule(item)]

    def generator(self, forcefield: app.ForceField, residue: app.topology.Residue) -> bool:
        """The function to pass to ``ForceField.registerTemplateGenerator``.

        Returns True after loading a template for ``residue``, False when no
        registered molecule has its atoms (so other generators can try).

        Raises
        ------
        ParametrizationError
            A registered molecule has the residue's atoms but not its bonds or
            hydrogens (the message names the residue and what differs), or the
            ForceField's 1-4 scales are not gnnff's.
        """
        graph = _graph_of_residue(residue)
        if graph is None:
            return False
        label = f"residue {residue.name} {residue.id} (chain {residue.chain.id})"
        key = self._match(graph, label)
        if key is None:
            return False
        text = self._template(key)
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
        """Key of the registered molecule whose graph is ``graph``'s, else None."""
        counts = Counter(nx.get_node_attributes(graph, "z").values())
        heavy = Counter({z: n for z, n in counts.items() if z != 1})
        near = None
        for key, (mol, reference) in self._registered.items():
            ref_counts = Counter(nx.get_node_attributes(reference, "z").values())
            if ref_counts == counts:
                if nx.is_isomorphic(graph, reference, node_match=lambda a, b: a["z"] == b["z"]):
                    return key
                near = near or (mol, ("the same atoms but different bonds (is the ligand missing CONECT "
                                     "records? build the topology from the molecule file instead)"))
            elif Counter({z: n for z, n in ref_counts.items() if z != 1}) == heavy:
                near = near or (mol, (f"the same heavy atoms but {ref_counts[1]} hydrogens instead of "
                                     f"{counts[1]} (add the hydrogens the molecule has, or register the "
                                     f"protonation state you simulate)"))
        if near is not None:
            mol, why = near
            raise ParametrizationError(
                f"{label} ({_formula(counts)}) matches no registered molecule: molecule "
                f"'{name_of(mol, molecule_key(mol))}' has {why}"
            )
        return None

    def _template(self, key: str) -> str:
        """The ffxml of registered molecule ``key``: from memory, the cache, or the model."""
        if key in self._ffxml:
            return self._ffxml[key]
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.source)
        digest = hashlib.sha256(f"{FFXML_VERSION}|{__version__}|{self._fingerprint}|{key}".encode()).hexdigest()
        path = self.cache / f"{digest}.xml" if self.cache is not None else None
        text = None
        if path is not None and path.is_file():
            text = path.read_text(encoding="utf-8")
        if text is None:
            mol = self._registered[key][0]
            result = assign_parameters(mol, model=self.source, name=name_of(mol, key))
            text = ffxml(result, template_name=f"gnnff-{digest[:12]}")
            if path is not None:
                atomic_write_text(path, text)
        self._ffxml[key] = text
        return text


