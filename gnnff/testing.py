"""Helpers to check gnnff against OpenMM, shipped so users and tests share them."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import torch

from gnnff.energy import compute_energy, forces
from gnnff.schema import TERMS, ForceFieldParameters
from gnnff.topology import Topology

__all__ = ["openmm_terms", "compare_with_openmm"]

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
