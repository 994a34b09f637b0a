"""Helpers to check gnnff against OpenMM, shipped so users and tests share them."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import torch

from gnnff.energy import compute_energy, forces
from gnnff.schema import TERMS, ForceFieldParameters
from gnnff.topology import Topology

__all__ = ["openmm_terms", "compare_with_openmm", "parameter_table", "assert_parameters_permute"]

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
    out: dict[str, tuple[float, float]] = {term.name: (0.0, 0.0) for term in TERMS}
    for c in range(x.shape[0]):
        reference = openmm_terms(system, x[c].numpy())
        for term in TERMS:
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
    for term in TERMS:
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
    for term in TERMS:
        assert a[term.name].keys() == b[term.name].keys(), f"{term.name}: different atom tuples"
        for key, value in a[term.name].items():
            np.testing.assert_allclose(b[term.name][key], value, atol=atol, rtol=rtol,
                                       err_msg=f"{term.name} {key}")
