"""OpenMM topologies and ffxml residue templates of molecules parametrized by gnnff.

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
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any
from xml.etree import ElementTree as ET

from openmm import app
from openmm.app.element import Element
from rdkit import Chem

from gnnff._version import __version__
from gnnff.api import Parametrized
from gnnff.chem.molecule import molecule_key
from gnnff.chem.topology import Topology
from gnnff.schema import (
    ANGLES,
    BONDS,
    COULOMB_14_SCALE,
    IMPROPERS,
    LJ_14_SCALE,
    NONBONDED,
    PROPERS,
    UREY_BRADLEYS,
    Term,
)

__all__ = ["FFXML_VERSION", "atom_names", "ffxml", "to_openmm_topology"]

#: Bumped whenever the ffxml written for the same parameters changes (2: template names
#: from the one molecule key of gnnff.chem.molecule, hydrogens removed).
FFXML_VERSION = 2


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
        impropers) and NonbondedForce entries, and AmoebaUreyBradleyForce for a model
        with Urey-Bradley terms (one writer per term). Loaded into a ForceField and applied to
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

    for term in values.terms:
        _FFXML_WRITERS[term.name](root, term, topology, values.term(term), types)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _force_element(root: ET.Element, tag: str, **attrib: str) -> ET.Element:
    """The force element ``tag`` of the ffxml, made on first use (terms may share one)."""
    element = root.find(tag)
    return element if element is not None else ET.SubElement(root, tag, **attrib)


def _ffxml_bonds(root: ET.Element, term: Term, topology: Topology, p: Any, types: list[str]) -> None:
    force = _force_element(root, "HarmonicBondForce")
    for (i, j), length, k in zip(topology.indices(term).tolist(), p.length.tolist(), p.k.tolist()):
        ET.SubElement(force, "Bond", type1=types[i], type2=types[j], length=_f(length), k=_f(k))


def _ffxml_angles(root: ET.Element, term: Term, topology: Topology, p: Any, types: list[str]) -> None:
    force = _force_element(root, "HarmonicAngleForce")
    for (i, j, k), angle, kk in zip(topology.indices(term).tolist(), p.angle.tolist(), p.k.tolist()):
        ET.SubElement(force, "Angle", type1=types[i], type2=types[j], type3=types[k], angle=_f(angle), k=_f(kk))


def _ffxml_torsions(root: ET.Element, term: Term, topology: Topology, p: Any, types: list[str]) -> None:
    """Propers and impropers (smirnoff ordering: the centre first, as our trefoil) in one
    PeriodicTorsionForce element, only the nonzero cosines, each order's share of k."""
    force = _force_element(root, "PeriodicTorsionForce", ordering="smirnoff")
    tag = "Improper" if term is IMPROPERS else "Proper"
    share = 1.0 / len(term.expansion)
    for row, ks, phases in zip(topology.indices(term).tolist(), p.k.tolist(), p.phase.tolist()):
        attrib = {f"type{m + 1}": types[a] for m, a in enumerate(row)}
        slot = 0
        for n, k, phase in zip(term.periodicities, ks, phases):
            if k != 0.0:
                slot += 1
                attrib.update({f"periodicity{slot}": str(n), f"phase{slot}": _f(phase), f"k{slot}": _f(share * k)})
        if slot:
            ET.SubElement(force, tag, attrib=attrib)


def _ffxml_nonbonded(root: ET.Element, term: Term, topology: Topology, p: Any, types: list[str]) -> None:
    """Sigma and epsilon per atom type; the charges are the residue's atoms' (written with it)."""
    force = ET.SubElement(root, "NonbondedForce", coulomb14scale=_f(COULOMB_14_SCALE), lj14scale=_f(LJ_14_SCALE))
    ET.SubElement(force, "UseAttributeFromResidue", name="charge")
    for t, sigma, eps in zip(types, p.sigma.tolist(), p.epsilon.tolist()):
        ET.SubElement(force, "Atom", type=t, sigma=_f(sigma), epsilon=_f(eps))


def _ffxml_urey_bradleys(root: ET.Element, term: Term, topology: Topology, p: Any, types: list[str]) -> None:
    """OpenMM's ``AmoebaUreyBradleyForce`` element: a HarmonicBondForce between the ends of
    each matching angle, with force constant ``2 k`` from the file's ``k`` (CHARMM's
    convention), hence ``k / 2`` here."""
    force = _force_element(root, "AmoebaUreyBradleyForce")
    for (i, j, k), length, kk in zip(topology.indices(term).tolist(), p.length.tolist(), p.k.tolist()):
        ET.SubElement(force, "UreyBradley", type1=types[i], type2=types[j], type3=types[k],
                      k=_f(0.5 * kk), d=_f(length))


#: Term name -> its ffxml writer ``(root, term, topology, parameters, atom types)``.
_FFXML_WRITERS = {
    BONDS.name: _ffxml_bonds,
    ANGLES.name: _ffxml_angles,
    PROPERS.name: _ffxml_torsions,
    IMPROPERS.name: _ffxml_torsions,
    NONBONDED.name: _ffxml_nonbonded,
    UREY_BRADLEYS.name: _ffxml_urey_bradleys,
}


def _comment(result: Parametrized) -> ET.Element:
    source = ET.Element("Source")
    source.text = (f"gnnff {__version__}, model {result.model}, molecule {molecule_key(result.mol)}; "
                   "1-4 scales Coulomb 1/1.2, LJ 1/2; Lorentz-Berthelot")
    return source
