"""Export: Topology + ForceFieldParameters -> ``openmm.System`` and its XML.

Only standard OpenMM forces, one per term present in the parameters (the terms of
:data:`gnnff.schema.TERMS` in their order), each in its own force group
(``term.force_group``) and named after the term. Each functional form
(:data:`gnnff.schema.FORMS`) has one table writer here, used by every term of that form.
Particles follow the topology's atom order. The nonbonded force has no cutoff; 1-2 and
1-3 pairs are exceptions with zero interaction, 1-4 pairs are exceptions scaled as in
:mod:`gnnff.schema`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import openmm
from openmm.app.element import Element

from gnnff.chem.topology import Topology
from gnnff.files import atomic_write_text
from gnnff.schema import (
    COULOMB_14_SCALE,
    FORMS,
    LJ_14_SCALE,
    ForceFieldParameters,
    Term,
)

__all__ = ["system_xml", "to_openmm", "to_xml", "write_xml"]


# Each term's table: atom indices and value columns in the argument order of its force's
# add call. to_openmm and system_xml both read these, so the System and the XML written
# without it cannot disagree.
Table = tuple[np.ndarray, list[np.ndarray]]


def _torsion_table(idx: np.ndarray, p, term: Term) -> Table:
    """Atoms ``(m, 4)`` and ``[periodicity, phase, k]``, one row per nonzero cosine and
    expansion order (row-major: torsion, periodicity, order); zero constants are left out."""
    k, phase = np.asarray(p.k, dtype=float), np.asarray(p.phase, dtype=float)
    rows, cols = np.nonzero(k)
    orders = np.asarray(term.expansion)
    atoms = idx[rows][:, orders].reshape(-1, 4)  # (nonzero, orders, 4) -> one row per term
    repeat = len(term.expansion)
    periodicity = np.repeat(np.asarray(term.periodicities)[cols], repeat)
    return atoms, [periodicity, np.repeat(phase[rows, cols], repeat),
                   np.repeat(k[rows, cols] * (1.0 / repeat), repeat)]


def _harmonic_table(idx: np.ndarray, p, term: Term) -> Table:
    """Atoms of each expansion order and the form's columns (:data:`FORMS`), ``k`` shared
    out over the orders."""
    orders = np.asarray(term.expansion)
    atoms = idx[:, orders].reshape(-1, orders.shape[1])
    share = 1.0 / len(orders)
    return atoms, [np.repeat(np.asarray(getattr(p, name), dtype=float) * (share if name == "k" else 1.0),
                             len(orders)) for name in FORMS[term.form]]


def _table(term: Term, topology: Topology, p) -> Table:
    idx = topology.indices(term)
    if term.form == "periodic_torsion":
        return _torsion_table(idx, p, term)
    return _harmonic_table(idx, p, term)


def _exception_table(topology: Topology, p) -> Table:
    """Pairs and ``[charge product, sigma, epsilon]``: 1-2/1-3 pairs excluded, then 1-4
    pairs scaled."""
    q, sigma, eps = (np.asarray(x, dtype=float) for x in (p.charge, p.sigma, p.epsilon))
    excluded, pairs = topology.exclusions.reshape(-1, 2), topology.pairs_14.reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    n = len(excluded)
    return np.concatenate([excluded, pairs]), [
        np.concatenate([np.zeros(n), COULOMB_14_SCALE * q[i] * q[j]]),
        np.concatenate([np.ones(n), 0.5 * (sigma[i] + sigma[j])]),
        np.concatenate([np.zeros(n), LJ_14_SCALE * np.sqrt(eps[i] * eps[j])]),
    ]


def _table_rows(table: Table) -> Iterator[tuple]:
    """One flat tuple per row: atom indices, then the values (Python ints and floats)."""
    atoms, columns = table
    return zip(*(atoms[:, a].tolist() for a in range(atoms.shape[1])), *(c.tolist() for c in columns))


#: Functional form -> the add method of its force.
_ADD = {"harmonic_bond": "addBond", "harmonic_angle": "addAngle", "periodic_torsion": "addTorsion"}


def _adder(force: openmm.Force, method: str) -> Callable[..., int]:
    """``force.method`` without the Python wrapper's unit checks: the SWIG function
    ``openmm._openmm.<Class>_<method>`` with ``force`` bound (our values are plain floats
    in OpenMM's units), or the public method where this OpenMM has no such function.
    About half of a drug-like molecule's export time was those checks."""
    raw = getattr(openmm._openmm, f"{type(force).__name__}_{method}", None) if hasattr(openmm, "_openmm") else None
    return functools.partial(raw, force) if raw is not None else getattr(force, method)


def _nonbonded_force(force: openmm.NonbondedForce) -> None:
    force.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    force.setUseDispersionCorrection(False)


def _empty_forces(terms: tuple[Term, ...]) -> list[openmm.Force]:
    forces = []
    for term in terms:
        force = getattr(openmm, term.openmm_force)()
        force.setForceGroup(term.force_group)
        force.setName(term.name)
        if term.form == "nonbonded":
            _nonbonded_force(force)
        forces.append(force)
    return forces


def _numpy_values(parameters: ForceFieldParameters, topology: Topology) -> ForceFieldParameters:
    parameters.validate(topology.counts())
    return parameters.map(lambda term, name, x: x.detach().cpu().double().numpy())


def to_openmm(topology: Topology, parameters: ForceFieldParameters) -> openmm.System:
    """Build an ``openmm.System`` (vacuum, no cutoff, no constraints).

    Parameters
    ----------
    topology
        Molecule (or batch) topology; particles are its atoms, in order.
    parameters
        Parameters for ``topology``.

    Returns
    -------
    openmm.System
        One standard force per term present in ``parameters``, force group
        ``term.force_group``; masses from the elements.
    """
    values = _numpy_values(parameters, topology)
    system = openmm.System()
    add_particle = _adder(system, "addParticle")
    for z in topology.atomic_numbers.tolist():
        add_particle(_mass(z))
    for term, force in zip(values.terms, _empty_forces(values.terms)):
        p = values.term(term)
        if term.form == "nonbonded":
            add = _adder(force, "addParticle")
            for row in zip(p.charge.tolist(), p.sigma.tolist(), p.epsilon.tolist()):
                add(*row)
            add = _adder(force, "addException")
            for row in _table_rows(_exception_table(topology, p)):
                add(*row)
        else:
            add = _adder(force, _ADD[term.form])
            for row in _table_rows(_table(term, topology, p)):
                add(*row)
        system.addForce(force)
    return system


@functools.cache
def _mass(z: int) -> float:
    """Mass of element ``z`` in daltons."""
    return Element.getByAtomicNumber(z).mass.value_in_unit(openmm.unit.dalton)


def _number(x: float) -> str:
    """A double as ``XmlSerializer`` writes it: shortest round-trip digits, no leading 0,
    no trailing ``.0``, exponent form outside 1e-4 <= |x| < 1e16."""
    text = repr(x)
    if text.endswith(".0"):
        text = text[:-2]
    if text.startswith("0."):
        return text[1:]
    if text.startswith("-0."):
        return "-" + text[2:]
    return text


def _column(values: np.ndarray) -> list[str]:
    """Each value as :func:`_number` writes it; repeated values (expanded impropers, the
    phases, excluded pairs) formatted once."""
    if values.dtype.kind in "iu":
        return [str(v) for v in values.tolist()]
    unique, inverse = np.unique(values, return_inverse=True)
    text = [_number(v) for v in unique.tolist()]
    return [text[i] for i in inverse.tolist()]


#: XML element of a table's rows: fields {0}-{3} are the atom slots (unused ones empty),
#: {4}... the value columns; attributes in XmlSerializer's (alphabetical) order
#: (form -> XML element of a row, and the collection element holding the rows)
_ELEMENT = {
    "harmonic_bond": '<Bond d="{4}" k="{5}" p1="{0}" p2="{1}"/>',
    "harmonic_angle": '<Angle a="{4}" k="{5}" p1="{0}" p2="{1}" p3="{2}"/>',
    "periodic_torsion": '<Torsion k="{6}" p1="{0}" p2="{1}" p3="{2}" p4="{3}" periodicity="{4}" phase="{5}"/>',
    "exceptions": '<Exception eps="{6}" p1="{0}" p2="{1}" q="{4}" sig="{5}"/>',
}
_COLLECTION = {"harmonic_bond": "Bonds", "harmonic_angle": "Angles", "periodic_torsion": "Torsions"}


def _xml_lines(template: str, table: Table) -> list[str]:
    atoms, columns = table
    strings = [_column(atoms[:, a]) for a in range(atoms.shape[1])]
    strings += [[""] * len(atoms)] * (4 - atoms.shape[1])  # pad the atom slots to four
    strings += [_column(c) for c in columns]
    return list(map(template.format, *strings))


def _fill(template: str, tag: str, lines: list[str], depth: int, after: str = "") -> str:
    """Replace the first empty ``<tag/>`` at ``depth`` tabs that follows the text ``after``
    in ``template`` by ``lines``."""
    if not lines:
        return template
    empty = "\n" + "\t" * depth + f"<{tag}/>"
    at = template.index(empty, template.index(after) if after else 0)
    inner = "\t" * (depth + 1)
    block = ("\n" + "\t" * depth + f"<{tag}>\n" + "".join(inner + line + "\n" for line in lines)
             + "\t" * depth + f"</{tag}>")
    return template[:at] + block + template[at + len(empty):]


@functools.cache
def _xml_template(terms: tuple[Term, ...]) -> str:
    """The serialized System with the forces of ``terms`` and no particles (for this OpenMM)."""
    system = openmm.System()
    for force in _empty_forces(terms):
        system.addForce(force)
    return openmm.XmlSerializer.serialize(system)


def system_xml(topology: Topology, parameters: ForceFieldParameters) -> str:
    """The XML of ``to_openmm(topology, parameters)``, written from the parameter arrays
    without building the System: the same string ``XmlSerializer.serialize`` gives (tested
    character for character), in a fraction of the time."""
    values = _numpy_values(parameters, topology)
    masses = {z: _number(_mass(z)) for z in set(topology.atomic_numbers.tolist())}
    text = _fill(_xml_template(values.terms), "Particles",
                 [f'<Particle mass="{masses[z]}"/>' for z in topology.atomic_numbers.tolist()], 1)
    for term in values.terms:
        p = values.term(term)
        if term.form == "nonbonded":
            particles = [f'<Particle eps="{e}" q="{q}" sig="{s}"/>' for q, s, e in zip(
                *(_column(np.asarray(x, dtype=float)) for x in (p.charge, p.sigma, p.epsilon)))]
            text = _fill(text, "Particles", particles, 3, after=f'name="{term.name}"')
            exceptions = _xml_lines(_ELEMENT["exceptions"], _exception_table(topology, p))
            text = _fill(text, "Exceptions", exceptions, 3, after=f'name="{term.name}"')
        else:
            lines = _xml_lines(_ELEMENT[term.form], _table(term, topology, p))
            text = _fill(text, _COLLECTION[term.form], lines, 3, after=f'name="{term.name}"')
    return text


def to_xml(system: openmm.System) -> str:
    """Serialize a System with ``openmm.XmlSerializer``."""
    return openmm.XmlSerializer.serialize(system)


def write_xml(system: openmm.System, path: str | os.PathLike) -> Path:
    """Write a System's XML atomically (temp file + rename)."""
    return atomic_write_text(path, to_xml(system))
