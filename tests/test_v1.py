"""gnnff-v1 building blocks: resonance-invariant features and charges, exact linear angles,
sparse torsions that survive export, ion library charges, the label pipeline and the
separate nonbonded stage."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import openmm
import pytest
import torch
from rdkit import Chem

import gnnff
from gnnff.chem.features import atom_features
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.chem.topology import build_topology
from gnnff.errors import InputError, ModelError
from gnnff.mm.energy import compute_energy
from gnnff.mm.export import to_openmm
from gnnff.nn.checkpoint import save_checkpoint
from gnnff.nn.network import Graph, NetworkConfig, build_network
from gnnff.schema import PROPERS
from gnnff.sources.gnn import GNNSource
from gnnff.train.config import load_config
from gnnff.train.labels import add_lennard_jones, label_molecule, label_nonbonded, read_labels

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


@pytest.mark.parametrize("smiles, vertices", [
    ("CC#N", [1]), ("CC#CC", [1, 2]), ("C=C=C", [1]), ("CN=[N+]=[N-]", [2]), ("O=C=O", [1]),
])
def test_linear_centres_get_theta0_pi_exactly(smiles, vertices):
    mol, topology, p = _parameters(_random_network(V1), smiles)
    angle = p.angles.angle.numpy()
    at_vertex = np.isin(topology.angles[:, 1], vertices)
    assert at_vertex.any()
    assert np.all(angle[at_vertex] == math.pi)
    assert np.all(angle[~at_vertex] < 3.0)
    system = to_openmm(topology, p)
    force = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicAngleForce))
    exported = [force.getAngleParameters(i)[3].value_in_unit(openmm.unit.radian) for i in range(force.getNumAngles())]
    assert [a == math.pi for a in exported] == at_vertex.tolist()


@pytest.mark.parametrize("smiles, centres", [("CC#N", {1}), ("CC#CC", {1, 2}), ("CN=[N+]=[N-]", {2})])
def test_no_torsion_about_a_linear_centre(smiles, centres):
    _, topology, p = _parameters(_random_network(V1), smiles)
    about_centre = np.array([j in centres or k in centres for _, j, k, _ in topology.propers], dtype=bool)
    k = p.propers.k.numpy()
    assert np.all(k[about_centre] == 0.0)
    system = to_openmm(topology, p)
    force = next(f for f in system.getForces() if isinstance(f, openmm.PeriodicTorsionForce))
    exported = {tuple(force.getTorsionParameters(i)[:4]) for i in range(force.getNumTorsions())}
    assert not any(t[1] in centres or t[2] in centres for t in exported)


def test_max_periodicity_limits_the_exported_propers():
    config = dataclasses.replace(V1, max_periodicity=3)
    _, topology, p = _parameters(_random_network(config, seed=2), "CC(=O)Oc1ccccc1C(=O)O")
    k = p.propers.k.numpy()
    assert np.all(k[:, 3:] == 0.0) and np.count_nonzero(k[:, :3]) > 0
    system = to_openmm(topology, p)
    force = next(f for f in system.getForces() if f.getName() == "propers")
    assert {force.getTorsionParameters(i)[4] for i in range(force.getNumTorsions())} <= {1, 2, 3}
    with pytest.raises(ModelError, match="max_periodicity must be 1..6, got 0"):
        NetworkConfig.from_dict({**V1.to_dict(), "max_periodicity": 0})


def test_v0_networks_keep_theta0_below_pi():
    """The option is off for gnnff-industry-v0's architecture: its outputs do not change."""
    config = NetworkConfig(width=32, depth=2, head_width=32, head_depth=1)
    _, topology, p = _parameters(_random_network(config), "CC#N")
    assert np.all(p.angles.angle.numpy() < math.pi)


def _openmm_energy(system: openmm.System, x_nm: np.ndarray) -> float:
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x_nm)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


def test_sparse_torsions_are_exact_zeros_and_survive_export():
    network = _random_network(V1, seed=1)
    mol, topology, p = _parameters(network, "CC(=O)Oc1ccccc1C(=O)O")
    k = p.propers.k.numpy()
    assert 0 < np.count_nonzero(k) < k.size  # some periodicities pruned, some kept
    system = to_openmm(topology, p)
    torsions = next(f for f in system.getForces() if f.getName() == PROPERS.name)
    assert torsions.getNumTorsions() == np.count_nonzero(k)
    x = positions_nm(with_conformer(mol))[0]
    ours = sum(float(e.sum()) for e in compute_energy(topology, p, torch.as_tensor(x)[None]).values())
    assert _openmm_energy(system, x) == pytest.approx(ours, rel=1e-9, abs=1e-6)
    dense = build_network(NetworkConfig(**{**V1.to_dict(), "torsion_threshold": 0.0})).double().eval()
    dense.load_state_dict(network.state_dict())
    with torch.no_grad():
        full = dense(Graph.from_topology(topology, atom_features(mol, "v1"), torch.float64))
    assert np.count_nonzero(full.propers.k.numpy()) == k.size  # the threshold did the pruning


def _v1_checkpoint(tmp_path, elements=(1, 6, 7, 8, 11, 15, 16, 17)):
    network = _random_network(V1)
    path = tmp_path / "v1.pt"
    save_checkpoint(path, network, V1, elements=list(elements), ions_only=[11])
    return path


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


def test_prepare_adds_bracket_hydrogens():
    for smiles, n in (("[NH4+]", 5), ("[OH-]", 2), ("[OH3+]", 4), ("C[NH3+]", 8)):
        assert gnnff.load_molecule(smiles).GetNumAtoms() == n


def test_labels_resume_and_record_failures(tmp_path):
    path = tmp_path / "labels.jsonl"
    molecules = [("CCO", "t"), ("CC(=O)[O-]", "t"), ("not a smiles", "t")]
    counts = label_nonbonded(molecules, path, method="mmff94")
    assert counts == {"done": 0, "labelled": 2, "failed": 1}
    with open(path, "a") as handle:
        handle.write('{"input": "CCN", "sou')  # an interrupted write
    counts = label_nonbonded(molecules + [("CCN", "t")], path, method="mmff94")
    assert counts == {"done": 3, "labelled": 1, "failed": 0}
    entries = list(read_labels(path))
    assert [e["input"] for e in entries] == ["CCO", "CC(=O)[O-]", "not a smiles", "CCN"]
    bad = entries[2]
    assert "error" in bad and "not a smiles" in bad["error"]
    acetate = entries[1]
    assert sum(acetate["charges"]) == pytest.approx(-1.0, abs=1e-5)
    assert len(acetate["sigma"]) == len(acetate["charges"]) == 7


def test_charge_only_labels_completed_with_sage_lennard_jones(tmp_path):
    part, merged = tmp_path / "part.jsonl", tmp_path / "labels.jsonl"
    counts = label_nonbonded([("CC(=O)[O-]", "t"), ("C[NH3+].[Cl-]", "t")], part, method="mmff94",
                             lennard_jones=False)
    assert counts == {"done": 0, "labelled": 1, "failed": 1}
    charge_only = next(read_labels(part))
    assert "sigma" not in charge_only and len(charge_only["charges"]) == 7
    assert add_lennard_jones(part, merged) == {"done": 0, "labelled": 1, "failed": 1}
    assert add_lennard_jones(part, merged) == {"done": 2, "labelled": 0, "failed": 0}  # resumes
    complete = next(read_labels(merged))
    direct = label_molecule("CC(=O)[O-]", "t", "mmff94")
    assert complete["charges"] == charge_only["charges"]
    assert complete["sigma"] == direct["sigma"] and complete["epsilon"] == direct["epsilon"]


def test_label_of_a_salt_is_refused_with_a_message():
    entry = label_molecule("C[NH3+].[Cl-]", "t", "mmff94")
    assert "several components" in entry["error"]


def test_separate_nonbonded_needs_labels():
    with pytest.raises(InputError, match="nonbonded_width > 0 needs a 'nonbonded' section"):
        load_config({"data": [{"path": "x.sdf"}], "output": "out", "network": {"nonbonded_width": 32}})


SMILES = ["CCO", "CC(=O)O", "CC(=O)[O-]", "CCN", "CC[NH3+]", "c1ccccc1O", "CC(=O)N", "COC", "CCCl", "c1ccncc1",
          "CS(=O)(=O)N", "CC#N", "OCCO", "CC(C)=O", "NCC(=O)O", "c1ccc(cc1)C(=O)[O-]", "CCOC(=O)C", "CCS",
          "Fc1ccccc1", "CNC(=O)C", "C[N+](C)(C)C", "OC1CCCCC1", "CC(O)C(=O)[O-]", "c1ccoc1", "c1cc[nH]c1",
          "CCCCO", "CC(N)C(=O)O", "O=CC=O", "CC=CC", "ClCCl", "CCC#CC", "NC(=O)N", "COc1ccccc1", "CC(C)N",
          "OC(=O)CC(=O)O", "C1CCNCC1", "CSC", "Brc1ccccc1", "CC[O-]", "OCC(O)CO"]


@pytest.mark.slow
def test_nonbonded_stage_lowers_held_out_error(tmp_path):
    from gnnff.train.config import NonbondedStage
    from gnnff.train.nonbonded_training import (
        _batch,
        _validation_part,
        load_labelled,
        nonbonded_metrics,
        train_nonbonded,
    )

    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in SMILES], labels, method="mmff94")
    stage = NonbondedStage(labels=str(labels), epochs=40, batch_molecules=8, learning_rate=3e-3, patience=40,
                           validation=0.25)
    torch.manual_seed(0)
    network = build_network(V1).nonbonded
    molecules = load_labelled(labels, features="v1")
    held = [_batch([m for m in molecules if _validation_part(m.key, 0.25)], torch.float32)]
    before = nonbonded_metrics(network, held)
    summary = train_nonbonded(network, stage, features="v1", exclude=set(), output=tmp_path)
    after = nonbonded_metrics(network, held)
    assert summary["molecules"]["validation"] >= 3
    assert after["charge_rmse"] < 0.7 * before["charge_rmse"]
    assert after["sigma_rel_rmse"] < 0.7 * before["sigma_rel_rmse"]
    again = train_nonbonded(build_network(V1).nonbonded, stage, features="v1", exclude=set(), output=tmp_path)
    assert again == json.loads((tmp_path / "nonbonded.json").read_text())  # a finished stage is loaded, not redone
    # ... unless the feature code changed since: a stored fingerprint of other features is an error
    stored = json.loads((tmp_path / "nonbonded.json").read_text())
    (tmp_path / "nonbonded.json").write_text(json.dumps({**stored, "feature_fingerprint": "0" * 16}))
    with pytest.raises(InputError, match=r"nonbonded\.pt: trained on features 'v1' as computed by other code.*"
                                         r"delete .* to retrain"):
        train_nonbonded(build_network(V1).nonbonded, stage, features="v1", exclude=set(), output=tmp_path)


@pytest.mark.slow
def test_label_curve_script_measures_stage_one_against_references(tmp_path):
    """benchmarks/training/label_curve.py through a subprocess: stage 1 trained on the first N labels
    for two sizes, scored against a references file; a reference that is among the labels is
    left out, the RMSE in the CSV is that of the saved network, a second run loads instead of
    retraining, and a size beyond the labels is a one-line error."""
    import csv
    import gzip
    import subprocess
    import sys
    from pathlib import Path

    from gnnff.nn.network import NonbondedNetwork
    from gnnff.train.labels import prepared_from_mapped_smiles

    labels = tmp_path / "labels.jsonl"
    label_nonbonded([(s, "t") for s in SMILES], labels, method="mmff94")
    (tmp_path / "cfg.yaml").write_text(
        "data: [{path: unused.sdf}]\noutput: unused\n"
        "network: {width: 32, depth: 2, head_width: 32, head_depth: 1, features: v1, nonbonded_width: 32,"
        " nonbonded_depth: 2}\n"
        "nonbonded: {labels: labels.jsonl, epochs: 3, batch_molecules: 8, learning_rate: 0.003, patience: 3,"
        " validation: 0.25}\n")
    held_out = ["CCCC(=O)[O-]", "c1ccc(N)cc1", "CCOCC"]
    references = {}
    for smiles in [*held_out, "CCO"]:  # ethanol is among the labels: left out
        entry = label_molecule(smiles, method="mmff94", lennard_jones=False)
        references[entry["smiles"]] = {"charges": (np.asarray(entry["charges"]) + 0.01).tolist()}
    with gzip.open(tmp_path / "refs.json.gz", "wt") as handle:
        json.dump({"method": "am1bcc", "charges": references}, handle)
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(root / "benchmarks" / "training" / "label_curve.py"), "--sizes", "20", "40",
               "--labels", str(labels), "--config", str(tmp_path / "cfg.yaml"),
               "--references", str(tmp_path / "refs.json.gz"), "-o", str(tmp_path / "out")]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "3 reference molecules (1 left out: among the labels)" in first.stdout
    rows = list(csv.DictReader(open(tmp_path / "out" / "label_curve.csv")))
    assert [int(r["labels"]) for r in rows] == [20, 40]
    network = NonbondedNetwork(32, 2, 32, 1)
    network.load_state_dict(torch.load(tmp_path / "out" / "n40" / "nonbonded.pt", weights_only=True))
    errors = []
    for smiles, entry in references.items():
        mol = prepared_from_mapped_smiles(smiles, smiles)
        if Chem.MolToSmiles(Chem.RemoveHs(mol)) == "CCO":
            continue
        graph = Graph.from_topology(build_topology(mol), atom_features(mol, "v1"), torch.float32,
                                    output_dtype=torch.float64)
        with torch.no_grad():
            errors.append(network(graph).charge.numpy() - np.asarray(entry["charges"]))
    assert float(rows[1]["rmse"]) == pytest.approx(float(np.sqrt(np.mean(np.concatenate(errors) ** 2))), rel=1e-6)
    assert (tmp_path / "out" / "label_curve.png").stat().st_size > 10_000
    second = subprocess.run(command, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and second.stdout.count("trained before, loaded") == 2
    too_many = subprocess.run(command[:3] + ["400"] + command[5:], capture_output=True, text=True, check=False)
    assert too_many.returncode == 1
    assert too_many.stderr.strip().splitlines() == [
        f"label_curve.py: error: --sizes 400: {labels} has 40 usable entries; give sizes up to 40"]


def test_pruned_torsions_still_get_gradient():
    """The threshold passes gradients straight through: a cosine below it can come back."""
    from gnnff.nn.network import _signed_torsion

    raw = torch.tensor([0.01, -0.02, 1.0], dtype=torch.float64, requires_grad=True)
    k, phase = _signed_torsion(raw, threshold=0.2)
    assert k[0].item() == 0.0 and k[1].item() == 0.0 and k[2].item() == pytest.approx(2.0 - 0.2)
    assert phase.tolist() == [0.0, math.pi, 0.0]
    k.sum().backward()
    assert torch.all(raw.grad.abs() > 0)


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


def _make_labels_script():
    """recipes/v1/make_labels.py as a module (a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "recipes" / "v1" / "make_labels.py"
    spec = importlib.util.spec_from_file_location("make_labels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_snapshot_round_trip(tmp_path):
    """recipes/v1/make_labels.py keeps its labels in a committed gzip snapshot: written from
    the complete lines of labels.jsonl (a torn last line left out), restored to the same entries."""
    import json

    from gnnff.train.labels import read_labels

    make_labels = _make_labels_script()
    labels = tmp_path / "labels.jsonl"
    entries = [{"input": "CCO", "charges": [0.1, -0.1]}, {"input": "[Na+]", "error": "x"}]
    labels.write_text("".join(json.dumps(e) + "\n" for e in entries) + '{"input": "CC', encoding="utf-8")
    snapshot = tmp_path / "labels.jsonl.gz"
    make_labels.write_snapshot(labels, snapshot)
    restored = tmp_path / "restored.jsonl"
    make_labels.restore_snapshot(snapshot, restored)
    assert list(read_labels(restored)) == entries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jsonl", "labels.jsonl.gz", "restored.jsonl"]


def test_held_out_molecules_match_however_mapped_and_their_labels_are_dropped(tmp_path):
    """The hold-out key of a molecule is the same for its atom-mapped SMILES (how the industry
    set's training molecules are queued) and for an unmapped, stereo-tagged one (FreeSolv);
    make_labels drops the label entries of held-out molecules and keeps the rest."""
    import json

    from gnnff.chem.molecule import mapped_smiles, plain_smiles
    from gnnff.train.labels import read_labels

    mol = gnnff.load_molecule("C[C@H](O)c1ccccc1")
    assert plain_smiles(mapped_smiles(mol)) == plain_smiles("OC(C)c1ccccc1") == "CC(O)c1ccccc1"
    assert plain_smiles("C1CC") is None
    make_labels = _make_labels_script()
    labels = tmp_path / "labels.jsonl"
    entries = [{"input": mapped_smiles(mol), "charges": [0.0]}, {"input": "CCO", "charges": [0.1]},
               {"input": "[Na+]", "error": "x"}]
    labels.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    assert make_labels.drop_held_out(labels, {"CC(O)c1ccccc1"}) == 1
    assert list(read_labels(labels)) == entries[1:]
    assert make_labels.drop_held_out(labels, {"CC(O)c1ccccc1"}) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]


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
