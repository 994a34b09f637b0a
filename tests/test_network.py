"""The network: symmetric, valid by construction, exact net charge, exportable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.chem.features import atom_features
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.chem.topology import Topology
from gnnff.errors import ModelError
from gnnff.nn.network import Graph, NetworkConfig, build_network
from gnnff.testing import assert_parameters_permute, compare_with_openmm


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    net = build_network(NetworkConfig(width=32, depth=2, head_width=32)).double()
    # perturb every weight so that heads are far from their near-constant start
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


def _predict(network, mol, dtype=torch.float64):
    top = gnnff.build_topology(mol)
    return top, network(Graph.from_topology(top, atom_features(mol), dtype))


@pytest.mark.parametrize("smiles", ["CC(=O)Oc1ccccc1C(=O)[O-]", "[NH3+]C(Cc1c[nH]cn1)C(=O)[O-]",
                                    "c1ccccc1[N+](=O)[O-]", "CS(=O)(=O)NC1CC1", "Brc1ccc(P(=O)(O)O)cc1"])
def test_relabelling_permutes_every_parameter(network, smiles):
    mol = gnnff.load_molecule(smiles)
    order = np.random.default_rng(1).permutation(mol.GetNumAtoms())
    permuted = gnnff.load_molecule(Chem.RenumberAtoms(mol, order.tolist()))
    assert_parameters_permute(_predict(network, mol), _predict(network, permuted), order, atol=1e-10)


@pytest.mark.parametrize("smiles", ["CCO", "C[NH3+]", "CC(=O)[O-]", "[NH3+]CC(=O)[O-]", "COP(=O)([O-])[O-]",
                                    "[Na+]", "[Cl-]", "NC(=[NH2+])N"])
def test_charges_sum_to_net_charge(network, smiles):
    top, p = _predict(network, gnnff.load_molecule(smiles))
    assert abs(p.nonbonded.charge.sum().item() - top.net_charge) < 1e-12


def test_batched_charges_sum_per_molecule(network):
    mols = [gnnff.load_molecule(s) for s in ("CC(=O)[O-]", "C[NH3+]", "COP(=O)([O-])[O-]")]
    tops = [gnnff.build_topology(m) for m in mols]
    batch = Topology.batch(tops)
    p = network(Graph.from_topology(batch, np.concatenate([atom_features(m) for m in mols]), torch.float64))
    sums = torch.zeros(3, dtype=torch.float64).index_add(0, torch.as_tensor(batch.molecule_index),
                                                         p.nonbonded.charge)
    assert torch.allclose(sums, torch.tensor([-1.0, 1.0, -2.0], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("drawings, group", [
    (("CC(=O)[O-]", "CC([O-])=O"), "[OX1]"),
    (("c1ccccc1[N+](=O)[O-]", "c1ccccc1[N+]([O-])=O"), "[OX1]"),
    (("NC(=[NH2+])c1ccccc1", "[NH2+]=C(N)c1ccccc1"), "[NX3;H2,$([NH2+])]"),
])
def test_resonance_forms_get_identical_parameters(network, drawings, group):
    results = []
    for smiles in drawings:
        mol = gnnff.load_molecule(smiles)
        top, p = _predict(network, mol)
        atoms = [m[0] for m in mol.GetSubstructMatches(Chem.MolFromSmarts(group))]
        q = p.nonbonded.charge[atoms]
        assert len(atoms) >= 2 and torch.allclose(q, q[:1].expand_as(q), atol=1e-12), (smiles, q)
        results.append(p.nonbonded.charge)
    # both drawings list atoms in the same order here: all charges agree
    assert torch.allclose(results[0], results[1], atol=1e-12)


def test_parameters_valid_by_construction(network):
    top, p = _predict(network, gnnff.load_molecule("CC(=O)Oc1ccccc1C(=O)O"))
    assert (p.bonds.k > 0).all() and ((p.bonds.length > 0.08) & (p.bonds.length < 0.32)).all()
    assert (p.angles.k > 0).all() and ((p.angles.angle > 0) & (p.angles.angle < np.pi)).all()
    for container in (p.propers, p.impropers):
        assert (container.k >= 0).all()
        assert ((container.phase == 0) | (container.phase == np.pi)).all()
    assert (p.nonbonded.sigma > 0).all() and (p.nonbonded.epsilon > 0).all()


def test_exported_system_reproduces_network_energy(network):
    mol = with_conformer(gnnff.load_molecule("CC(=O)Oc1ccccc1C(=O)[O-]"))
    top, p = _predict(network, mol)
    p = p.map(lambda term, name, x: x.detach())
    x = positions_nm(mol) + np.random.default_rng(0).normal(scale=0.005, size=(3, mol.GetNumAtoms(), 3))
    for term, (de, df) in compare_with_openmm(top, p, gnnff.to_openmm(top, p), x).items():
        assert de < 1e-6 and df < 1e-4, (term, de, df)


def test_float32_and_float64_agree(network):
    mol = gnnff.load_molecule("CC(=O)Oc1ccccc1C(=O)O")
    _, p64 = _predict(network, mol)
    net32 = build_network(network.config)
    net32.load_state_dict({k: v.float() for k, v in network.state_dict().items()})
    _, p32 = _predict(net32, mol, torch.float32)
    assert torch.allclose(p32.nonbonded.charge.double(), p64.nonbonded.charge, atol=1e-4)
    assert torch.allclose(p32.bonds.length.double(), p64.bonds.length, rtol=1e-4)


def test_unknown_architecture_lists_known():
    with pytest.raises(ModelError, match=r"unknown architecture 'transformer'; known: gnn"):
        build_network(NetworkConfig(architecture="transformer"))
    with pytest.raises(ModelError, match=r"unknown network option\(s\) \['widht'\]"):
        NetworkConfig.from_dict({"widht": 3})


def test_row_blocks_change_nothing_of_parameters_or_gradients(network, monkeypatch):
    """Large graphs run their row-wise layers in blocks (gnnff.nn.network.ROW_BLOCK): a
    graph cut into many small blocks gives the parameters, and the weight gradients, of
    one pass over the whole graph."""
    import gnnff.nn.network as module

    mol = gnnff.load_molecule("CC(=O)Oc1ccccc1C(=O)[O-].[NH3+]C(Cc1c[nH]cn1)C(=O)[O-]")
    top = gnnff.build_topology(mol)
    graph = Graph.from_topology(top, atom_features(mol), torch.float64)

    def run(block: int):
        monkeypatch.setattr(module, "ROW_BLOCK", block)
        network.zero_grad()
        out = network(graph)
        values = [(f"{term.name}.{f.name}", getattr(out.term(term), f.name)) for term in out.terms
                  for f in term.fields()]
        sum(x.square().sum() for _, x in values).backward()
        return values, [p.grad.clone() for p in network.parameters()]

    whole, whole_grads = run(10**9)
    cut, cut_grads = run(5)  # several blocks of atoms, edges and tuples (every ordering count)
    assert max(len(graph.tuples[name]) for name in graph.tuples) > 5
    for (name, a), (_, b) in zip(whole, cut):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    for a, b in zip(whole_grads, cut_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
