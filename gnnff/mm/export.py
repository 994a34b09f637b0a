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
import itertools
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


#: XML element of a table's row as a %-format: ints are atom slots of the table, "vN" its
#: value column N; attributes in XmlSerializer's (alphabetical) order. Floats are written
#: with %r (shortest round-trip digits, what XmlSerializer writes) and tidied by _tidy.
_ELEMENT = {
    "harmonic_bond": ('<Bond d="%r" k="%r" p1="%d" p2="%d"/>', ("v0", "v1", 0, 1)),
    "harmonic_angle": ('<Angle a="%r" k="%r" p1="%d" p2="%d" p3="%d"/>', ("v0", "v1", 0, 1, 2)),
    "periodic_torsion": ('<Torsion k="%r" p1="%d" p2="%d" p3="%d" p4="%d" periodicity="%d" phase="%r"/>',
                         ("v2", 0, 1, 2, 3, "v0", "v1")),
    "exceptions": ('<Exception eps="%r" p1="%d" p2="%d" q="%r" sig="%r"/>', ("v2", 0, 1, "v0", "v1")),
}
_COLLECTION = {"harmonic_bond": "Bonds", "harmonic_angle": "Angles", "periodic_torsion": "Torsions"}


def _tidy(text: str) -> str:
    """Python's float reprs in attribute values as XmlSerializer writes them: no trailing
    ".0", no leading 0 before the point (exponent forms agree already). Every attribute
    value is a number, so plain replacements are exact."""
    return text.replace('.0"', '"').replace('="0.', '=".').replace('="-0.', '="-.')


def _rows(template: str, columns: list[list], depth: int) -> str:
    """The rows of ``template`` % each row of ``columns``, one per line at ``depth`` tabs:
    one C-level formatting of the whole block."""
    n = len(columns[0])
    if not n:
        return ""
    block = ("\n" + "\t" * depth).join([template] * n)
    return _tidy(block % tuple(itertools.chain.from_iterable(zip(*columns))))


def _xml_rows(form: str, table: Table, depth: int) -> str:
    atoms, values = table
    template, order = _ELEMENT[form]
    columns = [atoms[:, slot].tolist() if isinstance(slot, int) else values[int(slot[1:])].tolist()
               for slot in order]
    return _rows(template, columns, depth)


def _filled(template: str, blocks: list[tuple[str, int, str, str]]) -> str:
    """``template`` with, for each ``(tag, depth, after, rows)``, the first empty ``<tag/>``
    at ``depth`` tabs that follows the text ``after`` replaced by ``rows`` (written at
    depth + 1; none: left empty), joined once."""
    cuts: list[tuple[int, int, str]] = []
    for tag, depth, after, rows in blocks:
        if not rows:
            continue
        empty = "\n" + "\t" * depth + f"<{tag}/>"
        at = template.index(empty, template.index(after) if after else 0)
        outer = "\n" + "\t" * depth
        cuts.append((at, at + len(empty), f"{outer}<{tag}>{outer}\t{rows}{outer}</{tag}>"))
    pieces, done = [], 0
    for start, stop, block in sorted(cuts):
        pieces += [template[done:start], block]
        done = stop
    pieces.append(template[done:])
    return "".join(pieces)


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
    masses = [_mass(z) for z in topology.atomic_numbers.tolist()]
    blocks = [("Particles", 1, "", _rows('<Particle mass="%r"/>', [masses], 2))]
    for term in values.terms:
        p = values.term(term)
        after = f'name="{term.name}"'
        if term.form == "nonbonded":
            columns = [np.asarray(x, dtype=float).tolist() for x in (p.epsilon, p.charge, p.sigma)]
            blocks.append(("Particles", 3, after, _rows('<Particle eps="%r" q="%r" sig="%r"/>', columns, 4)))
            blocks.append(("Exceptions", 3, after, _xml_rows("exceptions", _exception_table(topology, p), 4)))
        else:
            blocks.append((_COLLECTION[term.form], 3, after, _xml_rows(term.form, _table(term, topology, p), 4)))
    return _filled(_xml_template(values.terms), blocks)


def to_xml(system: openmm.System) -> str:
    """Serialize a System with ``openmm.XmlSerializer``."""
    return openmm.XmlSerializer.serialize(system)


def write_xml(system: openmm.System, path: str | os.PathLike) -> Path:
    """Write a System's XML atomically (temp file + rename)."""
    return atomic_write_text(path, to_xml(system))
