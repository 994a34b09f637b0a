"""Atom features that do not depend on the resonance form drawn: charges equal on
equivalent atoms, averaging over the structures with the fewest formal charges, and a
fingerprint of the feature code that checkpoints record."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.chem.features import atom_features
from gnnff.chem.topology import build_topology
from gnnff.nn.checkpoint import save_checkpoint
from gnnff.nn.network import Graph, NetworkConfig, build_network
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


def _parameters(network, smiles: str):
    mol = gnnff.load_molecule(smiles)
    topology = build_topology(mol)
    with torch.no_grad():
        p = network(Graph.from_topology(topology, atom_features(mol, network.config.features), torch.float64))
    return mol, topology, p


def _heavy_match(a: Chem.Mol, b: Chem.Mol) -> list[int]:
    """Atoms of ``b`` in the order of ``a`` for two drawings of one molecule (skeleton match)."""
    skeletons = []
    for mol in (a, b):
        plain = Chem.RWMol(mol)
        for atom in plain.GetAtoms():
            atom.SetFormalCharge(0)
            atom.SetNoImplicit(True)
            atom.SetIsAromatic(False)
        for bond in plain.GetBonds():
            bond.SetBondType(Chem.BondType.SINGLE)
            bond.SetIsAromatic(False)
        skeletons.append(plain)
    match = skeletons[1].GetSubstructMatch(skeletons[0])
    assert len(match) == a.GetNumAtoms()
    return list(match)


def _v1_checkpoint(tmp_path, elements=(1, 6, 7, 8, 11, 15, 16, 17)):
    network = _random_network(V1)
    path = tmp_path / "v1.pt"
    save_checkpoint(path, network, V1, elements=list(elements), ions_only=[11])
    return path


@pytest.mark.parametrize("first, second", [
    ("CCn1cc[n+](C)c1", "CC[n+]1ccn(C)c1"),  # imidazolium, unequal substituents, charge drawn on either N
    ("CC(=O)[O-]", "CC([O-])=O"),
    ("CN(C)C=CC=[N+](C)C", "C[N+](C)=CC=CN(C)C"),  # vinylogous amidinium
    ("NC(=[NH2+])c1ccccc1", "[NH2+]=C(N)c1ccccc1"),
])
def test_charges_do_not_depend_on_the_resonance_form_drawn(first, second):
    network = _random_network(V1)
    mol_a, _, p_a = _parameters(network, first)
    mol_b, _, p_b = _parameters(network, second)
    match = _heavy_match(mol_a, mol_b)
    np.testing.assert_allclose(p_a.nonbonded.charge.numpy(), p_b.nonbonded.charge.numpy()[match], atol=1e-12)
    assert float(p_a.nonbonded.charge.sum()) == pytest.approx(Chem.GetFormalCharge(mol_a), abs=1e-12)


@pytest.mark.parametrize("charge_separated, neutral", [
    ("[CH2+]C=C[O-]", "C=CC=O"),
    ("[O-]c1cccc[n+]1C", "O=c1ccccn1C"),  # pyridinium-olate drawn for N-methyl-2-pyridone
    ("C[N+](C)=CC=C[O-]", "CN(C)C=CC=O"),  # vinylogous amide
])
def test_a_charge_separated_drawing_of_a_neutral_molecule_gets_the_neutral_features(charge_separated, neutral):
    """Only the resonance structures with the fewest formal charges are averaged, so a
    zwitterionic drawing of a molecule that has an uncharged structure reads as that one."""
    a, b = gnnff.load_molecule(charge_separated), gnnff.load_molecule(neutral)
    np.testing.assert_array_equal(atom_features(a, "v1"), atom_features(b, "v1")[_heavy_match(a, b)])


def test_structures_with_more_charge_separation_are_not_averaged_in():
    """RDKit also enumerates push-pull forms (an aminium beside a nitronate in p-nitroaniline)
    and a doubly charged terminal nitrogen in phenyl azide; unweighted, they put charge on the
    amine and below -1 on the azide. Counted are the fewest-charge structures only."""
    from gnnff.chem.features import structure_averaged

    charges, _ = structure_averaged(gnnff.load_molecule("Nc1ccc([N+](=O)[O-])cc1"))
    np.testing.assert_allclose(charges[:7], [0, 0, 0, 0, 0, 1, -0.5], atol=1e-12)  # amine N 0, nitro O -1/2
    charges, _ = structure_averaged(gnnff.load_molecule("c1ccccc1N=[N+]=[N-]"))
    np.testing.assert_allclose(charges[:9], [0] * 6 + [-0.5, 1.0, -0.5], atol=1e-12)  # N=N+=N- and N(-)-N+#N


def test_v0_features_did_depend_on_the_ring_resonance_form():
    """The defect v1 fixes: terminal averaging alone sees which imidazolium N was drawn charged."""
    a, b = gnnff.load_molecule("CCn1cc[n+](C)c1"), gnnff.load_molecule("CC[n+]1ccn(C)c1")
    match = _heavy_match(a, b)
    assert not np.allclose(atom_features(a, "v0"), atom_features(b, "v0")[match])
    np.testing.assert_array_equal(atom_features(a, "v1"), atom_features(b, "v1")[match])


@pytest.mark.parametrize("smiles, groups", [
    ("Cn1cc[n+](C)c1", [(1, 4)]),  # symmetric imidazolium: both N
    ("CC(=O)[O-]", [(2, 3)]),
    ("NC(=[NH2+])N", [(0, 2, 3)]),  # guanidinium
    ("c1ccccc1", [(0, 1, 2, 3, 4, 5)]),
])
def test_equivalent_atoms_get_equal_charges(smiles, groups):
    _, _, p = _parameters(_random_network(V1, seed=3), smiles)
    q = p.nonbonded.charge.numpy()
    for group in groups:
        assert np.ptp(q[list(group)]) < 1e-12, (smiles, q[list(group)])


def test_a_checkpoint_of_other_feature_code_is_warned_by_name(tmp_path):
    """A checkpoint records the fingerprint of the feature code it was trained on; loading it
    where the features are computed differently warns (another RDKit may be the cause, so it
    is not refused), naming both fingerprints; the same code loads silently."""
    import warnings

    from gnnff.nn.checkpoint import FeatureWarning

    path = _v1_checkpoint(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureWarning)
        GNNSource(path)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "feature_fingerprint": "0" * 16}, tmp_path / "other.pt")
    with pytest.warns(FeatureWarning, match=r"other\.pt: trained on features 'v1' as computed by another gnnff "
                                            r"or RDKit \(fingerprint 0{16}, here [0-9a-f]{16}\); its parameters may"):
        GNNSource(tmp_path / "other.pt")


def test_prepare_adds_bracket_hydrogens():
    for smiles, n in (("[NH4+]", 5), ("[OH-]", 2), ("[OH3+]", 4), ("C[NH3+]", 8)):
        assert gnnff.load_molecule(smiles).GetNumAtoms() == n


def test_resonance_is_averaged_per_conjugated_system_whatever_their_number():
    """Seven carboxylates: 2^7 whole-molecule combinations exceed MAX_STRUCTURES, but each
    system is enumerated on its own, so every carboxylate oxygen gets exactly -1/2 and
    every C-O bond 3/2; a 2,500-atom peptide is handled system by system."""
    from gnnff.chem.features import MAX_STRUCTURES, atom_features, structure_averaged

    mol = gnnff.load_molecule("C(C(=O)[O-])" * 7 + "C")
    assert 2**7 > MAX_STRUCTURES
    charges, orders = structure_averaged(mol)
    oxygens = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 8]
    np.testing.assert_array_equal(charges[oxygens], -0.5)
    co = [b.GetIdx() for b in mol.GetBonds() if {b.GetBeginAtom().GetAtomicNum(), b.GetEndAtom().GetAtomicNum()} == {6, 8}]
    np.testing.assert_array_equal(orders[co], 1.5)
    peptide = gnnff.load_molecule(Chem.MolFromSequence("ACDEFGHIKLMNPQRSTVWY" * 8))
    features = atom_features(peptide, "v1")
    assert features.shape[0] == peptide.GetNumAtoms() > 2500


@pytest.mark.parametrize("smiles", ["C=CC=CC=O", "O=C1C=CC(=O)C=C1", "C1=CC=CC=CC=C1", "c1ccc2cccc2cc1",
                                    "c1ccc2c(c1)-c1ccccc1-2", "c1ccccc1C=CC(=O)NC(=O)c1ccncc1",
                                    "O=C(O)c1ccc(cc1)N=Nc1ccccc1"])
def test_conjugated_systems_without_formal_charges_are_not_enumerated_because_nothing_moves(smiles):
    """structure_averaged skips systems without formal charges; the premise: RDKit
    enumerates such a system (charge separation not allowed) to one structure with the
    input's charges and non-aromatic bond orders, so skipping it changes nothing."""
    from gnnff.chem.features import (
        MAX_STRUCTURES,
        _system_atoms,
        _system_structures,
        bonds_in_order,
        conjugated_systems,
    )

    mol = gnnff.load_molecule(smiles)
    bonds = bonds_in_order(mol)
    systems = conjugated_systems(mol, bonds)
    assert systems
    for system in systems:
        charges, orders = _system_structures(mol, bonds, system, _system_atoms(bonds, system), 0, MAX_STRUCTURES)
        np.testing.assert_array_equal(charges, 0.0)
        for k, order in zip(system, orders):
            if not bonds[k].GetIsAromatic():
                assert order == bonds[k].GetBondTypeAsDouble(), (smiles, k)


def test_resonance_enumeration_is_cut_after_its_step_budget(monkeypatch):
    """RDKit's enumeration can run for minutes (a triazido-trinitrobenzene: 78 s); it stops
    after MAX_ENUMERATION_STEPS progress steps and the system keeps its drawn charges. With
    a budget of one step, an imidazolium is not averaged; with the default it is."""
    import gnnff.chem.features as features

    mol = gnnff.load_molecule("CCn1cc[n+](C)c1")
    charged = [a.GetIdx() for a in mol.GetAtoms() if a.GetFormalCharge()]
    nitrogens = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "N"]
    charge = atom_features(mol, "v1")[:, -2]
    assert charge[nitrogens[0]] == pytest.approx(charge[nitrogens[1]]) == pytest.approx(0.5)
    monkeypatch.setattr(features, "MAX_ENUMERATION_STEPS", 1)
    drawn = atom_features(mol, "v1")[:, -2]
    assert drawn[charged] == pytest.approx([1.0]) and drawn.sum() == pytest.approx(1.0)
    monkeypatch.undo()
    explosive = gnnff.load_molecule("c1(c(c(c(c(c1[N+](=O)[O-])N=[N+]=[N-])[N+](=O)[O-])N=[N+]=[N-])"
                                    "[N+](=O)[O-])N=[N+]=[N-]")
    x = atom_features(explosive, "v1")  # finishes in about two seconds
    assert x.shape[0] == explosive.GetNumAtoms() and np.isfinite(x).all()


def test_feature_fingerprint_follows_the_feature_code(monkeypatch):
    """The fingerprint stored with a trained stage 1 changes when the feature code computes
    other features (here: no resonance enumeration at all) and only for that set."""
    from gnnff.chem import features

    before = {v: features.feature_fingerprint(v) for v in features.FEATURE_SETS}
    assert before["v0"] != before["v1"]
    assert features.feature_fingerprint("v1") == before["v1"]
    monkeypatch.setattr(features, "MAX_ENUMERATION_STEPS", 0)
    assert features.feature_fingerprint("v1") != before["v1"]
    assert features.feature_fingerprint("v0") == before["v0"]
