"""Export: Topology + ForceFieldParameters -> ``openmm.System`` and its XML.

Only standard OpenMM forces, one per term of :data:`gnnff.schema.TERMS`, each in
its own force group (``term.force_group``). Particles follow the topology's atom
order. The nonbonded force has no cutoff; 1-2 and 1-3 pairs are exceptions with
zero interaction, 1-4 pairs are exceptions scaled as in :mod:`gnnff.schema`.
"""

from __future__ import annotations

import csv
import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openmm
from openmm.app.element import Element

from gnnff.schema import (
    ANGLES,
    BONDS,
    COULOMB_14_SCALE,
    IMPROPERS,
    LJ_14_SCALE,
    NONBONDED,
    PROPERS,
    TERMS,
    ForceFieldParameters,
    Term,
)
from gnnff.topology import Topology

__all__ = ["atomic_write", "atomic_write_csv", "atomic_write_text", "to_openmm", "to_xml", "write_xml"]


def _add_bonds(force: openmm.HarmonicBondForce, idx: np.ndarray, p) -> None:
    for (i, j), length, k in zip(idx.tolist(), p.length.tolist(), p.k.tolist()):
        force.addBond(i, j, length, k)


def _add_angles(force: openmm.HarmonicAngleForce, idx: np.ndarray, p) -> None:
    for (i, j, k), angle, kk in zip(idx.tolist(), p.angle.tolist(), p.k.tolist()):
        force.addAngle(i, j, k, angle, kk)


def _add_torsions(force: openmm.PeriodicTorsionForce, idx: np.ndarray, p, term: Term) -> None:
    k_all, phase_all = p.k.tolist(), p.phase.tolist()
    orders, share = term.expansion, 1.0 / len(term.expansion)
    for row, ks, phases in zip(idx.tolist(), k_all, phase_all):
        for n, k, phase in zip(term.periodicities, ks, phases):
            if k == 0.0:
                continue
            for order in orders:
                a, b, c, d = (row[o] for o in order)
                force.addTorsion(a, b, c, d, n, phase, share * k)


def _add_propers(force, idx, p) -> None:
    _add_torsions(force, idx, p, PROPERS)


def _add_impropers(force, idx, p) -> None:
    _add_torsions(force, idx, p, IMPROPERS)


def _add_nonbonded(force: openmm.NonbondedForce, topology: Topology, p) -> None:
    force.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    force.setUseDispersionCorrection(False)
    q, sigma, eps = p.charge.tolist(), p.sigma.tolist(), p.epsilon.tolist()
    for i in range(topology.n_atoms):
        force.addParticle(q[i], sigma[i], eps[i])
    for i, j in topology.exclusions.tolist():
        force.addException(i, j, 0.0, 1.0, 0.0)
    for i, j in topology.pairs_14.tolist():
        force.addException(i, j, COULOMB_14_SCALE * q[i] * q[j], 0.5 * (sigma[i] + sigma[j]),
                           LJ_14_SCALE * float(np.sqrt(eps[i] * eps[j])))


_EXPORTERS = {BONDS.name: _add_bonds, ANGLES.name: _add_angles,
              PROPERS.name: _add_propers, IMPROPERS.name: _add_impropers}


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
        One standard force per term, force group ``term.force_group``; masses from
        the elements.
    """
    parameters.validate(topology.counts())
    values = parameters.map(lambda term, name, x: x.detach().cpu().double().numpy())
    system = openmm.System()
    for z in topology.atomic_numbers.tolist():
        system.addParticle(Element.getByAtomicNumber(z).mass)
    for term in TERMS:
        force = getattr(openmm, term.openmm_force)()
        force.setForceGroup(term.force_group)
        force.setName(term.name)
        p = values.term(term)
        if term is NONBONDED:
            _add_nonbonded(force, topology, p)
        else:
            _EXPORTERS[term.name](force, topology.indices(term), p)
        system.addForce(force)
    return system


def to_xml(system: openmm.System) -> str:
    """Serialize a System with ``openmm.XmlSerializer``."""
    return openmm.XmlSerializer.serialize(system)


@functools.cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, which is
    then renamed; on any failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    """Write ``rows`` (dicts sharing the keys of the first, or ``fieldnames``) as a CSV
    table with a header, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames or list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


def write_xml(system: openmm.System, path: str | os.PathLike) -> Path:
    """Write a System's XML atomically (temp file + rename)."""
    return atomic_write_text(path, to_xml(system))
