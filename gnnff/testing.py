"""Helpers to check gnnff against OpenMM, shipped so users and tests share them."""

from __future__ import annotations

import numpy as np
import openmm
import torch
from openmm import unit

from gnnff.chem.topology import Topology
from gnnff.mm.energy import compute_energy, forces
from gnnff.schema import ForceFieldParameters

__all__ = [
    "assert_parameters_permute",
    "compare_with_openmm",
    "energies_by_force",
    "openmm_terms",
    "random_rotation",
    "assert_rigid_motion_invariant",
    "assert_atoms_permute",
    "parameter_table",
    "subsystem",
]

_KJ = unit.kilojoule_per_mole
_KJ_NM = unit.kilojoule_per_mole / unit.nanometer


def openmm_terms(system: openmm.System, positions: np.ndarray,
                 platform: str = "Reference") -> dict[int, tuple[float, np.ndarray]]:
    """Energy (kJ/mol) and forces (kJ/mol/nm) of every force group at one geometry (nm)."""
    context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName(platform))
    context.setPositions(np.asarray(positions, dtype=np.float64))
    out = {}
    for group in sorted({f.getForceGroup() for f in system.getForces()}):
        state = context.getState(getEnergy=True, getForces=True, groups={group})
        out[group] = (state.getPotentialEnergy().value_in_unit(_KJ),
                      state.getForces(asNumpy=True).value_in_unit(_KJ_NM))
    return out


def compare_with_openmm(topology: Topology, parameters: ForceFieldParameters, system: openmm.System,
                        positions: np.ndarray) -> dict[str, tuple[float, float]]:
    """Largest energy and force deviation of gnnff's torch energy from OpenMM's, per term.

    Parameters
    ----------
    positions
        ``(n_conformations, n_atoms, 3)`` in nm.

    Returns
    -------
    dict
        Term name -> (max relative energy error with an absolute floor of 1 kJ/mol,
        max absolute force component error in kJ/mol/nm), over conformations.
    """
    x = torch.as_tensor(np.asarray(positions, dtype=np.float64))
    ours = {k: v[:, 0].detach().numpy() for k, v in compute_energy(topology, parameters, x).items()}
    out: dict[str, tuple[float, float]] = {term.name: (0.0, 0.0) for term in parameters.terms}
    for c in range(x.shape[0]):
        reference = openmm_terms(system, x[c].numpy())
        groups = {term.force_group: term.name for term in parameters.terms}
        if set(reference) != set(groups):
            raise AssertionError(f"the System's force groups {sorted(reference)} are not those of the "
                                 f"parameters' terms {groups}")
        for term in parameters.terms:
            e_ref, f_ref = reference[term.force_group]
            f = forces(topology, parameters, x[c : c + 1], term)[0].numpy()
            de = abs(ours[term.name][c] - e_ref) / max(abs(e_ref), 1.0)
            df = float(np.abs(f - f_ref).max()) if f.size else 0.0
            e_max, f_max = out[term.name]
            out[term.name] = (max(e_max, de), max(f_max, df))
    return out


def _canonical(row: tuple[int, ...], symmetry: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    return min(tuple(row[i] for i in perm) for perm in symmetry)


def parameter_table(topology: Topology, parameters: ForceFieldParameters,
                    relabel: np.ndarray | None = None) -> dict[str, dict[tuple[int, ...], np.ndarray]]:
    """Parameters keyed by canonical atom tuple (under each term's symmetry group).

    ``relabel[i]`` maps atom ``i`` of ``topology`` to the label used in the keys
    (identity if None), so two atom orders of one molecule can be compared.
    """
    out: dict[str, dict[tuple[int, ...], np.ndarray]] = {}
    for term in parameters.terms:
        container = parameters.term(term)
        rows = topology.indices(term)
        width = len(term.periodicities) or 1
        values = np.concatenate(
            [getattr(container, f.name).detach().double().cpu().numpy().reshape(len(rows), width)
             for f in term.fields()], axis=1)
        if relabel is not None:
            rows = np.asarray(relabel)[rows]
        out[term.name] = {_canonical(tuple(r), term.symmetry): v for r, v in zip(rows.tolist(), values)}
    return out


def assert_parameters_permute(original: tuple[Topology, ForceFieldParameters],
                              permuted: tuple[Topology, ForceFieldParameters],
                              new_order: np.ndarray, atol: float = 1e-10, rtol: float = 1e-12) -> None:
    """Assert that relabelling atoms (``permuted`` atom ``i`` is ``original`` atom
    ``new_order[i]``) relabels every term's parameters and changes nothing else."""
    a = parameter_table(*original)
    b = parameter_table(*permuted, relabel=new_order)
    assert a.keys() == b.keys(), f"different terms: {sorted(a)} vs {sorted(b)}"
    for term in original[1].terms:
        assert a[term.name].keys() == b[term.name].keys(), f"{term.name}: different atom tuples"
        for key, value in a[term.name].items():
            np.testing.assert_allclose(b[term.name][key], value, atol=atol, rtol=rtol,
                                       err_msg=f"{term.name} {key}")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix ``(3, 3)``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def assert_rigid_motion_invariant(energy_and_forces, positions: np.ndarray, *, moves: int = 4, seed: int = 0,
                                  rtol: float = 1e-10, atol: float = 1e-8) -> None:
    """Assert that rotating and translating a geometry leaves the energy unchanged and
    rotates the forces with it (invariance and equivariance).

    Parameters
    ----------
    energy_and_forces
        ``f(positions (n_atoms, 3) nm) -> (energies, forces (n_atoms, 3))``; ``energies`` a
        float or a dict of floats (e.g. per term), compared entry by entry.
    positions
        ``(n_atoms, 3)`` in nm.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(positions, dtype=np.float64)
    e0, f0 = energy_and_forces(x)
    e0 = e0 if isinstance(e0, dict) else {"energy": e0}
    scale = max(1.0, float(np.abs(f0).max()))
    for _ in range(moves):
        rotation, shift = random_rotation(rng), rng.normal(size=3)
        e, f = energy_and_forces(x @ rotation.T + shift)
        e = e if isinstance(e, dict) else {"energy": e}
        assert e.keys() == e0.keys()
        for name in e0:
            assert abs(float(e[name]) - float(e0[name])) <= atol + rtol * abs(float(e0[name])), \
                f"{name}: energy {float(e[name])} after a rigid motion, {float(e0[name])} before"
        np.testing.assert_allclose(np.asarray(f), np.asarray(f0) @ rotation.T, rtol=0, atol=atol + rtol * scale,
                                   err_msg="forces do not rotate with the molecule")


def assert_atoms_permute(values: np.ndarray, permuted_values: np.ndarray, new_order: np.ndarray, *,
                         atol: float = 0.0, what: str = "per-atom values") -> None:
    """Assert that per-atom rows follow a relabelling: row ``i`` of ``permuted_values`` is
    row ``new_order[i]`` of ``values`` (features, charges, forces, ...)."""
    np.testing.assert_allclose(np.asarray(permuted_values), np.asarray(values)[np.asarray(new_order)],
                               rtol=0, atol=atol, err_msg=f"{what} do not follow the atoms")


def energies_by_force(system: openmm.System, positions: np.ndarray,
                      platform: str = "Reference") -> dict[str, tuple[float, np.ndarray]]:
    """Energy (kJ/mol) and forces (kJ/mol/nm) summed per force class (``"PeriodicTorsionForce"``
    holds propers and impropers together), whatever the force groups; zero-energy
    bookkeeping forces (CMMotionRemover) are left out."""
    system = openmm.XmlSerializer.clone(system)
    classes: dict[str, int] = {}
    for force in system.getForces():
        name = type(force).__name__
        if name in ("CMMotionRemover", "MonteCarloBarostat"):
            force.setForceGroup(31)
            continue
        force.setForceGroup(classes.setdefault(name, len(classes)))
    context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName(platform))
    context.setPositions(np.asarray(positions, dtype=np.float64))
    out = {}
    for name, group in classes.items():
        state = context.getState(getEnergy=True, getForces=True, groups={group})
        out[name] = (state.getPotentialEnergy().value_in_unit(_KJ), state.getForces(asNumpy=True).value_in_unit(_KJ_NM))
    return out


def subsystem(system: openmm.System, atoms: list[int] | np.ndarray) -> openmm.System:
    """The part of ``system`` acting within ``atoms``: their particles (renumbered in the
    order given), every bond, angle and torsion whose atoms all lie among them, and the
    nonbonded particles and exceptions among them (no cutoff). Used to compare a ligand
    inside a complex with the ligand alone."""
    atoms = [int(a) for a in atoms]
    index = {a: i for i, a in enumerate(atoms)}
    out = openmm.System()
    for a in atoms:
        out.addParticle(system.getParticleMass(a))

    def inside(*particles: int) -> bool:
        return all(p in index for p in particles)

    for force in system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            new = openmm.HarmonicBondForce()
            for n in range(force.getNumBonds()):
                i, j, *p = force.getBondParameters(n)
                if inside(i, j):
                    new.addBond(index[i], index[j], *p)
        elif isinstance(force, openmm.HarmonicAngleForce):
            new = openmm.HarmonicAngleForce()
            for n in range(force.getNumAngles()):
                i, j, k, *p = force.getAngleParameters(n)
                if inside(i, j, k):
                    new.addAngle(index[i], index[j], index[k], *p)
        elif isinstance(force, openmm.PeriodicTorsionForce):
            new = openmm.PeriodicTorsionForce()
            for n in range(force.getNumTorsions()):
                i, j, k, m, *p = force.getTorsionParameters(n)
                if inside(i, j, k, m):
                    new.addTorsion(index[i], index[j], index[k], index[m], *p)
        elif isinstance(force, openmm.NonbondedForce):
            new = openmm.NonbondedForce()
            new.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
            for a in atoms:
                new.addParticle(*force.getParticleParameters(a))
            for n in range(force.getNumExceptions()):
                i, j, *p = force.getExceptionParameters(n)
                if inside(i, j):
                    new.addException(index[i], index[j], *p)
        else:
            continue
        new.setForceGroup(force.getForceGroup())
        out.addForce(new)
    return out
