"""Partial charges judged against a reference (AM1-BCC): the numbers that decide whether a
model's electrostatics can be trusted in water.

Per molecule (:func:`compare_charges`): per-atom RMSE and largest error, squared errors
per element, slope of q against q_ref through the origin (0.67 means charges 33 % too
small), dipole moments, the GB polarization energy (OpenMM ``GBSAOBCForce``, OBC2 with
mbondi2 radii, no surface term) with both charge sets on the same conformer, the net-charge
error and the spread of charges over symmetry- and resonance-equivalent atoms
(:func:`equivalent_atoms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import openmm
from openmm import unit
from rdkit import Chem

from gnnff.chem.features import structure_averaged, terminal_groups
from gnnff.chem.molecule import net_charge
from gnnff.units import KJ_TO_KCAL

__all__ = ["compare_charges", "dipole_debye", "equivalent_atoms", "gb_polarization_kcal", "nagl_charges"]

#: e * nm in debye.
_E_NM_TO_DEBYE = 48.0320471

#: mbondi2 radii (nm) by element; hydrogens on N get 0.13 nm.
_MBONDI2 = {1: 0.12, 6: 0.17, 7: 0.155, 8: 0.15, 9: 0.15, 15: 0.185, 16: 0.18, 17: 0.17, 35: 0.185, 53: 0.198}
#: OBC screening factors by element (others 0.8), as in OpenMM's and Amber's OBC2.
_SCREEN = {1: 0.85, 6: 0.72, 7: 0.79, 8: 0.85, 9: 0.88, 15: 0.86, 16: 0.96}

#: Bond types that stand for distinct averaged bond orders when atoms are ranked.
_ORDER_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.ONEANDAHALF,
                Chem.BondType.TWOANDAHALF, Chem.BondType.THREEANDAHALF, Chem.BondType.QUADRUPLE,
                Chem.BondType.QUINTUPLE, Chem.BondType.HEXTUPLE, Chem.BondType.FOURANDAHALF,
                Chem.BondType.FIVEANDAHALF, Chem.BondType.IONIC, Chem.BondType.HYDROGEN,
                Chem.BondType.THREECENTER, Chem.BondType.DATIVEONE, Chem.BondType.DATIVE,
                Chem.BondType.DATIVEL, Chem.BondType.DATIVER, Chem.BondType.OTHER, Chem.BondType.ZERO)


def equivalent_atoms(mol: Chem.Mol, max_structures: int = 256) -> np.ndarray:
    """Class label ``(n_atoms,)`` per atom: equal labels for atoms that symmetry or
    resonance makes equivalent (carboxylate oxygens, the nitrogens of an imidazolium or
    amidinium, the two ortho carbons of a phenyl).

    Formal charges and bond orders are averaged over the resonance structures RDKit
    enumerates (Kekulé forms included, at most ``max_structures``); atoms are then ranked
    without breaking ties on the molecule whose charges and bond orders are those averages.
    """
    mol = Chem.Mol(mol)
    n = mol.GetNumAtoms()
    charges, orders = structure_averaged(mol, kekule_all=True, max_structures=max_structures)
    _average_terminal_groups(mol, charges, orders)
    plain = Chem.RWMol(mol)
    levels = {v: k for k, v in enumerate(sorted(set(np.round(charges * 12).astype(int))))}
    for atom, q in zip(plain.GetAtoms(), charges):
        atom.SetFormalCharge(0)
        atom.SetNoImplicit(True)
        atom.SetIsAromatic(False)
        atom.SetIsotope(1 + levels[int(round(q * 12))])  # isotopes carry the averaged charge into the ranking
    kinds = {v: k for k, v in enumerate(sorted(set(np.round(orders * 12).astype(int))))}
    if len(kinds) > len(_ORDER_TYPES):
        raise ValueError("too many distinct averaged bond orders to rank")
    for bond, order in zip(plain.GetBonds(), orders):
        bond.SetIsAromatic(False)
        bond.SetBondType(_ORDER_TYPES[kinds[int(round(order * 12))]])
    plain.UpdatePropertyCache(strict=False)
    return np.array(Chem.CanonicalRankAtoms(plain, breakTies=False, includeChirality=False), dtype=int)[:n]


def _average_terminal_groups(mol: Chem.Mol, charges: np.ndarray, orders: np.ndarray) -> None:
    """Average charges and bond orders (in place) over terminal heavy atoms of one element
    and hydrogen count on one centre: the oxygens of phosphate and sulfonate, whose
    expanded-octet resonance RDKit does not enumerate."""
    for atom in mol.GetAtoms():
        for group in terminal_groups(atom):
            atoms = [b.GetOtherAtomIdx(atom.GetIdx()) for b in group]
            bonds = [b.GetIdx() for b in group]
            charges[atoms] = charges[atoms].mean()
            orders[bonds] = orders[bonds].mean()


def equivalent_spread(charges: np.ndarray, classes: np.ndarray) -> float:
    """Largest charge difference (e) between atoms of one equivalence class."""
    spread = 0.0
    for label in np.unique(classes):
        members = charges[classes == label]
        if len(members) > 1:
            spread = max(spread, float(members.max() - members.min()))
    return spread


def dipole_debye(charges: np.ndarray, positions_nm: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Dipole vector (D) about the centre of mass (origin-dependent for ions)."""
    centre = (masses[:, None] * positions_nm).sum(0) / masses.sum()
    return (charges[:, None] * (positions_nm - centre)).sum(0) * _E_NM_TO_DEBYE


def _radii(mol: Chem.Mol) -> tuple[list[float], list[float]]:
    radii, screen = [], []
    for atom in mol.GetAtoms():
        z = atom.GetAtomicNum()
        r = _MBONDI2.get(z, 0.15)
        if z == 1 and any(n.GetAtomicNum() == 7 for n in atom.GetNeighbors()):
            r = 0.13
        radii.append(r)
        screen.append(_SCREEN.get(z, 0.8))
    return radii, screen


def gb_polarization_kcal(mol: Chem.Mol, charges: np.ndarray, positions_nm: np.ndarray) -> float:
    """Electrostatic solvation (polarization) energy, kcal/mol: OBC2 generalized Born in
    water (dielectric 78.5, solute 1), no surface-area term, one conformer."""
    radii, screen = _radii(mol)
    force = openmm.GBSAOBCForce()
    force.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    force.setSolventDielectric(78.5)
    force.setSoluteDielectric(1.0)
    force.setSurfaceAreaEnergy(0.0)
    system = openmm.System()
    for atom, q, r, s in zip(mol.GetAtoms(), charges, radii, screen):
        system.addParticle(atom.GetMass())
        force.addParticle(float(q), r, s)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm * unit.nanometer)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return float(energy * KJ_TO_KCAL)


def compare_charges(mol: Chem.Mol, charges: np.ndarray, reference: np.ndarray,
                    positions_nm: np.ndarray) -> dict[str, Any]:
    """Metrics of ``charges`` against ``reference`` (both ``(n_atoms,)``, e) on one molecule.

    Returns
    -------
    dict
        ``rmse``, ``max_abs`` (e); ``sq_by_element`` {symbol: [sum of squared errors,
        count]}; ``dot``, ``ref_sq`` (for the slope over a set: sum dot / sum ref_sq);
        ``dipole``, ``dipole_ref``, ``dipole_error`` (D, magnitude of the vector
        difference); ``gb``, ``gb_ref`` (kcal/mol); ``net_error`` (e);
        ``equivalent_spread`` (e).
    """
    charges, reference = np.asarray(charges, dtype=float), np.asarray(reference, dtype=float)
    diff = charges - reference
    sq: dict[str, list[float]] = {}
    for atom, d in zip(mol.GetAtoms(), diff):
        entry = sq.setdefault(atom.GetSymbol(), [0.0, 0])
        entry[0] += float(d * d)
        entry[1] += 1
    masses = np.array([a.GetMass() for a in mol.GetAtoms()])
    mu, mu_ref = dipole_debye(charges, positions_nm, masses), dipole_debye(reference, positions_nm, masses)
    return {
        "rmse": float(np.sqrt(np.mean(diff**2))), "max_abs": float(np.abs(diff).max()), "sq_by_element": sq,
        "dot": float(charges @ reference), "ref_sq": float(reference @ reference),
        "dipole": float(np.linalg.norm(mu)), "dipole_ref": float(np.linalg.norm(mu_ref)),
        "dipole_error": float(np.linalg.norm(mu - mu_ref)),
        "gb": gb_polarization_kcal(mol, charges, positions_nm),
        "gb_ref": gb_polarization_kcal(mol, reference, positions_nm),
        "net_charge": net_charge(mol), "net_error": float(abs(charges.sum() - net_charge(mol))),
        "equivalent_spread": equivalent_spread(charges, equivalent_atoms(mol)),
    }


def nagl_charges(mol: Chem.Mol, model: str = "openff-gnn-am1bcc-1.0.0.pt") -> np.ndarray:
    """AM1-BCC charges predicted by OpenFF NAGL (optional: ``acellera-openff-nagl`` and
    ``acellera-openff-nagl-models``), in ``mol``'s atom order."""
    from gnnff.condensed.common import require

    nagl = require("openff.nagl", "NAGL charges")
    models = require("openff.nagl_models", "NAGL charges")
    from openff.toolkit import Molecule

    path = next((p for p in models.list_available_nagl_models() if str(p).endswith(model)), None)
    if path is None:
        raise FileNotFoundError(f"NAGL model {model} is not installed")
    network = _NAGL_CACHE.get(str(path))
    if network is None:
        network = _NAGL_CACHE[str(path)] = nagl.GNNModel.load(str(path), eval_mode=True)
    offmol = Molecule.from_rdkit(mol, allow_undefined_stereo=True, hydrogens_are_explicit=True)
    return np.asarray(network.compute_property(offmol, as_numpy=True), dtype=float)


_NAGL_CACHE: dict[str, Any] = {}


def summarize_metrics(per_molecule: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Set-level numbers from :func:`compare_charges` results: per-atom RMSE, slope,
    largest error, dipole RMSE (neutral molecules), GB bias (mean of gb - gb_ref) and RMSE, largest
    equivalent-atom spread and net-charge error."""
    sq = sum(s for m in per_molecule for s, _ in m["sq_by_element"].values())
    atoms = sum(c for m in per_molecule for _, c in m["sq_by_element"].values())
    gb = np.array([m["gb"] - m["gb_ref"] for m in per_molecule])
    neutral = [m for m in per_molecule if m.get("net_charge", 0) == 0]  # ions' dipoles depend on the origin
    return {
        "molecules": len(per_molecule),
        "rmse": float(np.sqrt(sq / atoms)) if atoms else float("nan"),
        "max_abs": max((m["max_abs"] for m in per_molecule), default=float("nan")),
        "slope": sum(m["dot"] for m in per_molecule) / max(1e-12, sum(m["ref_sq"] for m in per_molecule)),
        "dipole_rmse": float(np.sqrt(np.mean([m["dipole_error"] ** 2 for m in neutral]))) if neutral else float("nan"),
        "gb_bias": float(gb.mean()) if gb.size else float("nan"),
        "gb_rmse": float(np.sqrt(np.mean(gb**2))) if gb.size else float("nan"),
        "equivalent_spread": max((m["equivalent_spread"] for m in per_molecule), default=float("nan")),
        "net_error": max((m["net_error"] for m in per_molecule), default=float("nan")),
    }
