"""Monatomic and common inorganic ions: library charges that sum exactly to the net
charge, follow the input atom order, and an ion-only element refused when bonded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.nn.checkpoint import save_checkpoint
from gnnff.nn.network import NetworkConfig, build_network
from gnnff.sources.gnn import GNNSource

V1 = NetworkConfig(width=32, depth=2, head_width=32, head_depth=1, features="v1", nonbonded_width=32,
                   nonbonded_depth=2, torsion_threshold=0.5, linear_angles=True)


def _random_network(config: NetworkConfig, seed: int = 0) -> torch.nn.Module:
    """A network whose outputs vary strongly with the atom (the trained heads start near constant)."""
    torch.manual_seed(seed)
    network = build_network(config).double().eval()
    with torch.no_grad():
        for name, p in network.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]) * 1.5)
    return network


def _v1_checkpoint(tmp_path, elements=(1, 6, 7, 8, 11, 15, 16, 17)):
    network = _random_network(V1)
    path = tmp_path / "v1.pt"
    save_checkpoint(path, network, V1, elements=list(elements), ions_only=[11])
    return path


def test_an_element_covered_only_as_an_ion_is_refused_when_bonded(tmp_path):
    from gnnff.errors import ParametrizationError

    source = GNNSource(_v1_checkpoint(tmp_path))
    with pytest.raises(ParametrizationError, match=r"atom 1 \(Na\) is bonded; model .v1. covers Na only as a free "
                                                     r"monatomic ion; write it as a separate ion"):
        gnnff.assign_parameters("C[Na]", model=source)
    for smiles in ("C[Si](C)(C)C", "C[Si](C)(C)C.[Na+]"):  # one molecule; a salt is checked as a whole first
        with pytest.raises(ParametrizationError, match=r"atom 1 \(Si\) is an element model 'v1' does not cover; "
                                                         r"supported: H C N O P S Cl \(Na as monatomic ions\); "):
            gnnff.assign_parameters(smiles, model=source)
    salt = gnnff.assign_parameters("CC(=O)[O-].[Na+]", model=source)
    sodium = next(a.GetIdx() for a in salt.mol.GetAtoms() if a.GetSymbol() == "Na")
    assert salt.parameters.nonbonded.charge[sodium] == 1.0


def test_library_ions_get_their_table_charges_in_a_salt(tmp_path):
    from gnnff.chem.ions import library_charges

    source = GNNSource(_v1_checkpoint(tmp_path))
    result = gnnff.assign_parameters("C[NH3+].C[NH3+].[O-]S(=O)(=O)[O-].[Na+].[Cl-]", model=source)
    q = result.parameters.nonbonded.charge.numpy()
    parts = [list(f) for f in Chem.GetMolFrags(result.mol)]
    sulfate = next(f for f in parts if len(f) == 5)
    alone = gnnff.load_molecule("[O-]S(=O)(=O)[O-]")
    expected = library_charges(alone)
    assert expected is not None and expected.sum() == pytest.approx(-2.0, abs=1e-12)
    np.testing.assert_array_equal(np.sort(q[sulfate]), np.sort(expected))
    oxygens = [i for i in sulfate if result.mol.GetAtomWithIdx(i).GetSymbol() == "O"]
    assert np.ptp(q[oxygens]) == 0.0 and q[oxygens][0] < -0.8
    sodium, chloride = (next(f[0] for f in parts if result.mol.GetAtomWithIdx(f[0]).GetSymbol() == s)
                        for s in ("Na", "Cl"))
    assert q[sodium] == 1.0 and q[chloride] == -1.0  # exactly
    for ammonium in (f for f in parts if len(f) == 8):
        assert q[ammonium].sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", ["ammonium", "hydroxide", "hydronium", "nitrate", "nitrite", "sulfate",
                                  "hydrogen sulfate", "phosphate", "hydrogen phosphate", "dihydrogen phosphate",
                                  "carbonate", "bicarbonate", "perchlorate", "cyanide", "thiocyanate", "azide"])
def test_every_library_ion_sums_exactly_to_its_net_charge_with_equivalent_atoms_equal(name):
    """The table stores 6 decimals (dihydrogen phosphate summed to -0.999999 before the
    remainder was spread); equivalent atoms (same canonical rank) keep equal charges."""
    from gnnff.chem.ions import ION_SMILES, library_charges

    mol = gnnff.load_molecule(ION_SMILES[name])
    q = library_charges(mol)
    assert q is not None, f"{name} is not in the library"
    assert q.sum() == pytest.approx(Chem.GetFormalCharge(mol), abs=1e-12)
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    for rank in set(ranks):
        same = [q[i] for i, r in enumerate(ranks) if r == rank]
        assert max(same) - min(same) < 1e-12


def test_library_charges_follow_the_input_atom_order():
    from gnnff.chem.ions import library_charges

    a = gnnff.load_molecule("OP(=O)(O)[O-]")
    b = gnnff.load_molecule("[O-]P(O)(=O)O")
    qa, qb = library_charges(a), library_charges(b)
    assert qa is not None and qb is not None
    for mol, q in ((a, qa), (b, qb)):
        p = next(i for i, atom in enumerate(mol.GetAtoms()) if atom.GetSymbol() == "P")
        hydrogens = [i for i, atom in enumerate(mol.GetAtoms()) if atom.GetSymbol() == "H"]
        assert q[p] > 1.0 and all(0.3 < q[h] < 0.5 for h in hydrogens)
    assert sorted(qa) == pytest.approx(sorted(qb))
