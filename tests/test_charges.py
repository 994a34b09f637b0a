"""Charges sum exactly to the net formal charge, whatever the method."""

from __future__ import annotations

import numpy as np
import pytest

import gnnff
from gnnff.sources.charges import assign_charges

IONS_AND_ZWITTERIONS = ["[Na+]", "[Cl-]", "CC(=O)[O-]", "C[NH3+]", "[NH3+]CC(=O)[O-]",
                        "COP(=O)([O-])[O-]", "NC(=[NH2+])c1ccccc1"]


@pytest.mark.parametrize("smiles", IONS_AND_ZWITTERIONS)
def test_sage_charges_sum_to_net_charge(smiles):
    result = gnnff.assign_parameters(smiles, model="sage", charges="mmff94")
    q = result.parameters.nonbonded.charge
    assert abs(q.sum().item() - result.topology.net_charge) < 1e-12


@pytest.mark.sqm
@pytest.mark.parametrize("smiles", ["CC(=O)[O-]", "[NH3+]CC(=O)[O-]", "C[NH3+]", "c1ccccc1O"])
def test_am1bcc_fast_sums_and_is_close_to_am1bcc(smiles):
    mol = gnnff.load_molecule(smiles)
    fast = assign_charges(mol, "am1bcc-fast")
    total = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    assert abs(fast.sum() - total) < 1e-12
    full = assign_charges(mol, "am1bcc")
    assert abs(full.sum() - total) < 1e-12
    # same method, with and without the AM1 geometry optimisation: close, not equal
    assert np.abs(fast - full).max() < 0.15


def test_carboxylate_oxygens_equal_with_am1bcc_fast():
    mol = gnnff.load_molecule("CC(=O)[O-]")
    q = assign_charges(mol, "am1bcc-fast")
    oxygens = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "O"]
    assert abs(q[oxygens[0]] - q[oxygens[1]]) < 0.02


def test_water_gets_sage_library_charges():
    q = gnnff.assign_parameters("O", model="sage").parameters.nonbonded.charge.numpy()
    np.testing.assert_allclose(sorted(q), [-0.834, 0.417, 0.417], atol=1e-12)


def test_unknown_charge_method():
    with pytest.raises(gnnff.ModelError, match=r"unknown charge method 'esp'; known: am1bcc"):
        gnnff.parametrize("CCO", model="sage", charges="esp")
