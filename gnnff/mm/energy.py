"""Differentiable MM energy in PyTorch, batched over conformations and molecules.

Functional forms and units are those of :mod:`gnnff.schema` (OpenMM conventions,
nm, kJ/mol, rad, e). Forces are ``-d energy / d positions`` by autograd
(:func:`forces`). The energies equal those of the System written by
:func:`gnnff.mm.export.to_openmm`, term by term (tests prove it against OpenMM's
Reference platform).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from gnnff.chem.topology import Topology
from gnnff.schema import (
    COULOMB_14_SCALE,
    LJ_14_SCALE,
    ForceFieldParameters,
    Term,
)
from gnnff.units import ONE_4PI_EPS0

__all__ = [
    "compute_energy",
    "total_energy",
    "forces",
    "energy_and_forces",
    "distances",
    "angles",
    "dihedrals",
    "nonbonded_pairs",
]

#: Upper bound on the number of atom pairs handled at once by the nonbonded sum.
MAX_PAIRS_PER_CHUNK = 1 << 21


def distances(x: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """``|x_j - x_i|`` for positions ``(C, N, 3)`` and index tensors ``(T,)``; shape ``(C, T)``."""
    return torch.linalg.vector_norm(x[:, j] - x[:, i], dim=-1)


def angles(x: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Angle i-j-k in rad, ``(C, T)``; atan2 form, stable near 0 and pi."""
    u = x[:, i] - x[:, j]
    v = x[:, k] - x[:, j]
    cross = torch.linalg.vector_norm(torch.linalg.cross(u, v, dim=-1), dim=-1)
    return torch.atan2(cross, (u * v).sum(-1))


def dihedrals(x: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor,
              l: torch.Tensor) -> torch.Tensor:
    """Dihedral i-j-k-l in rad in (-pi, pi], IUPAC sign convention (as OpenMM), ``(C, T)``."""
    b1 = x[:, j] - x[:, i]
    b2 = x[:, k] - x[:, j]
    b3 = x[:, l] - x[:, k]
    n1 = torch.linalg.cross(b1, b2, dim=-1)
    n2 = torch.linalg.cross(b2, b3, dim=-1)
    y = torch.linalg.vector_norm(b2, dim=-1) * (b1 * n2).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def _periodic(phi: torch.Tensor, k: torch.Tensor, phase: torch.Tensor,
              periodicities: tuple[int, ...]) -> torch.Tensor:
    """``sum_n k_n (1 + cos(n phi - phase_n))`` for phi ``(C, T)``, k/phase ``(T, P)``."""
    n = torch.tensor(periodicities, dtype=phi.dtype, device=phi.device)
    return (k * (1.0 + torch.cos(phi[..., None] * n - phase))).sum(-1)


def _expanded(idx: torch.Tensor, term: Term) -> Iterator[tuple[torch.Tensor, ...]]:
    """The atom columns of each of the term's expansion orders."""
    for order in term.expansion:
        yield tuple(idx[:, a] for a in order)


def _harmonic_bond(x, idx, p, term: Term) -> torch.Tensor:
    share = 1.0 / len(term.expansion)
    return sum(0.5 * share * p.k * (distances(x, i, j) - p.length) ** 2 for i, j in _expanded(idx, term))


def _harmonic_angle(x, idx, p, term: Term) -> torch.Tensor:
    share = 1.0 / len(term.expansion)
    return sum(0.5 * share * p.k * (angles(x, i, j, k) - p.angle) ** 2 for i, j, k in _expanded(idx, term))


def _periodic_torsion(x, idx, p, term: Term) -> torch.Tensor:
    share = 1.0 / len(term.expansion)
    return sum(_periodic(dihedrals(x, *atoms), share * p.k, p.phase, term.periodicities)
               for atoms in _expanded(idx, term))


#: Functional form -> energy per tuple ``(C, T)`` of one valence term.
_FORM_ENERGY = {"harmonic_bond": _harmonic_bond, "harmonic_angle": _harmonic_angle,
                "periodic_torsion": _periodic_torsion}


def nonbonded_pairs(topology: Topology, max_pairs: int | None = None) -> Iterator[np.ndarray]:
    """Yield ``(P, 2)`` chunks of the fully interacting pairs (i < j, same molecule).

    Excluded (1-2, 1-3) and 1-4 pairs are left out. Memory is bounded by
    ``max_pairs`` (default :data:`MAX_PAIRS_PER_CHUNK`) whatever the size of the molecule.
    """
    max_pairs = MAX_PAIRS_PER_CHUNK if max_pairs is None else max_pairs
    n = topology.n_atoms
    special = np.concatenate([topology.exclusions, topology.pairs_14])
    special_keys = np.sort(special[:, 0] * n + special[:, 1])
    starts = np.flatnonzero(np.r_[True, np.diff(topology.molecule_index) != 0])
    ends = np.r_[starts[1:], n]
    buffer: list[np.ndarray] = []
    size = 0
    for a, b in zip(starts.tolist(), ends.tolist()):
        rows_per_chunk = max(1, max_pairs // max(1, b - a))
        for r0 in range(a, b, rows_per_chunk):
            i, j = np.meshgrid(np.arange(r0, min(b, r0 + rows_per_chunk)), np.arange(a, b),
                               indexing="ij")
            keep = j > i
            i, j = i[keep], j[keep]
            if len(special_keys):
                keep = ~np.isin(i * n + j, special_keys, assume_unique=False)
                i, j = i[keep], j[keep]
            buffer.append(np.stack([i, j], axis=1))
            size += len(i)
            if size >= max_pairs:
                yield np.concatenate(buffer)
                buffer, size = [], 0
    if buffer:
        yield np.concatenate(buffer)


def _pair_energy(x, pairs, p, coulomb_scale: float, lj_scale: float) -> torch.Tensor:
    i, j = pairs[:, 0], pairs[:, 1]
    r = distances(x, i, j)
    qq = p.charge[i] * p.charge[j]
    sigma = 0.5 * (p.sigma[i] + p.sigma[j])
    epsilon = torch.sqrt(p.epsilon[i] * p.epsilon[j])
    s6 = (sigma / r) ** 6
    return coulomb_scale * ONE_4PI_EPS0 * qq / r + lj_scale * 4.0 * epsilon * (s6 * s6 - s6)


def _molecule_sum(per_tuple: torch.Tensor, molecule: torch.Tensor, n_molecules: int) -> torch.Tensor:
    out = per_tuple.new_zeros((per_tuple.shape[0], n_molecules))
    return out.index_add(1, molecule, per_tuple)


def compute_energy(topology: Topology, parameters: ForceFieldParameters,
                   positions: torch.Tensor, *, pairs: np.ndarray | None = None,
                   terms: Sequence[Term] | None = None) -> dict[str, torch.Tensor]:
    """MM energy of every term.

    Parameters
    ----------
    topology
        One molecule or a batch (:meth:`Topology.batch`).
    parameters
        Parameters matching ``topology`` row for row, same dtype as ``positions``.
    positions
        ``(n_conformations, n_atoms, 3)`` or ``(n_atoms, 3)``, nm (tensor or numpy array).
    pairs
        Precomputed :func:`nonbonded_pairs` of ``topology`` (all chunks joined), to
        skip their enumeration in repeated calls.
    terms
        Only these terms (default: every term present in ``parameters``).

    Returns
    -------
    dict
        Term name -> energy in kJ/mol, shape ``(n_conformations, n_molecules)``, for
        every term present in ``parameters`` (in export order).
    """
    positions = torch.as_tensor(positions)  # numpy arrays (e.g. gnnff.chem.molecule.positions_nm) welcome
    x = positions if positions.dim() == 3 else positions[None]
    if x.shape[1] != topology.n_atoms:
        raise ValueError(f"positions have {x.shape[1]} atoms, the topology has {topology.n_atoms}")
    device = x.device
    molecule = torch.as_tensor(topology.molecule_index, device=device)
    n_mol = topology.n_molecules
    out: dict[str, torch.Tensor] = {}
    for term in parameters.terms:
        if terms is not None and term not in terms:
            continue
        if term.form == "nonbonded":
            out[term.name] = _nonbonded(topology, parameters.term(term), x, molecule, pairs)
            continue
        idx = torch.as_tensor(topology.indices(term), device=device)
        e = _FORM_ENERGY[term.form](x, idx, parameters.term(term), term)
        out[term.name] = _molecule_sum(e, molecule[idx[:, 0]], n_mol)
    return out


def _nonbonded(topology: Topology, p, x: torch.Tensor,
               molecule: torch.Tensor, pairs: np.ndarray | None) -> torch.Tensor:
    n_mol = topology.n_molecules
    pairs_14 = torch.as_tensor(topology.pairs_14, device=x.device)
    e14 = _pair_energy(x, pairs_14, p, COULOMB_14_SCALE, LJ_14_SCALE)
    total = _molecule_sum(e14, molecule[pairs_14[:, 0]], n_mol)
    for chunk in (nonbonded_pairs(topology) if pairs is None else [pairs]):
        pairs = torch.as_tensor(chunk, device=x.device)
        e = _pair_energy(x, pairs, p, 1.0, 1.0)
        total = total + _molecule_sum(e, molecule[pairs[:, 0]], n_mol)
    return total


def total_energy(energies: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over terms of the output of :func:`compute_energy`."""
    return torch.stack(list(energies.values())).sum(0)


def energy_and_forces(topology: Topology, parameters: ForceFieldParameters, positions: torch.Tensor, *,
                      term: Term | None = None, pairs: np.ndarray | None = None,
                      create_graph: bool = False, terms: Sequence[Term] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy ``(n_conformations, n_molecules)`` kJ/mol of one term (or all, or the sum of
    ``terms``) and its forces ``-dE/dx`` in kJ/mol/nm, shape of ``positions``.
    ``create_graph`` keeps the graph so a loss on the forces can be differentiated (training)."""
    x = positions.detach().requires_grad_(True)
    with torch.enable_grad():
        energies = compute_energy(topology, parameters, x, pairs=pairs, terms=terms)
        e = energies[term.name] if term is not None else total_energy(energies)
        (grad,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
    return e, -grad


def forces(topology: Topology, parameters: ForceFieldParameters,
           positions: torch.Tensor, term: Term | None = None) -> torch.Tensor:
    """Forces ``-dE/dx`` in kJ/mol/nm, shape of ``positions``; one term or all."""
    return energy_and_forces(topology, parameters, positions, term=term)[1]
