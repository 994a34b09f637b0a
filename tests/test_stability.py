"""Short MD with the default model stays finite and bonded for diverse chemistry.

Vacuum, Langevin 300 K, 1 fs, 5 ps per molecule on OpenMM's Reference platform (faster
than the CPU platform for molecules this small); positions and energy checked every
100 steps. Longer runs over the shared data set: ``benchmarks/gas_phase/stability.py``.
"""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from conftest import embedded
from openmm import unit

import gnnff

#: name -> SMILES: neutral, anion, cation, zwitterion, dianion, aromatic and fused rings,
#: halogens (F, Cl, Br), phosphorus and sulfur.
MOLECULES = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "acetate": "CC(=O)[O-]",
    "glycine_zwitterion": "[NH3+]CC(=O)[O-]",
    "dmt_cation": "C[NH+](C)CCc1c[nH]c2ccccc12",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "phenothiazine": "c1ccc2c(c1)Sc1ccccc1N2",
    "halobenzene": "FC(F)(F)c1ccc(Cl)c(Br)c1",
    "methyl_phosphate": "COP(=O)([O-])[O-]",
}
STEPS, REPORT_EVERY = 5000, 100  # 5 ps at 1 fs
MAX_STRETCH = 1.5  # longest allowed bond length / its r0


@pytest.fixture(scope="module")
def default_model():
    return gnnff.get_model()


def harmonic_bonds(system: openmm.System) -> tuple[np.ndarray, np.ndarray]:
    """Atom pairs ``(n, 2)`` and equilibrium lengths ``(n,)`` (nm) of the System's HarmonicBondForce."""
    force = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    pairs = np.array([(i, j) for i, j, _, _ in rows])
    r0 = np.array([length.value_in_unit(unit.nanometer) for _, _, length, _ in rows])
    return pairs, r0


@pytest.mark.parametrize("name", MOLECULES)
def test_short_md_stays_finite_and_bonded(name, default_model):
    mol = embedded(MOLECULES[name])
    system = gnnff.parametrize(mol, model=default_model, name=name)
    pairs, r0 = harmonic_bonds(system)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 1 * unit.femtosecond)
    integrator.setRandomNumberSeed(2024)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(mol.GetConformer().GetPositions() * 0.1)  # angstrom -> nm
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2024)
    for step in range(REPORT_EVERY, STEPS + 1, REPORT_EVERY):
        integrator.step(REPORT_EVERY)
        state = context.getState(getPositions=True, getEnergy=True)
        x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        assert np.isfinite(x).all() and np.isfinite(energy), f"{name}: NaN at step {step}"
        stretch = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1) / r0
        worst = int(np.argmax(stretch))
        i, j = pairs[worst].tolist()
        assert stretch[worst] <= MAX_STRETCH, f"{name}: bond {i}-{j} at {stretch[worst]:.2f} x r0 at step {step}"
