"""Torsion corrections (``gnnff finetune --tune torsions``): environment keys are
symmetric, direction- and atom-order-independent; a residual adds exactly its cosine
series to the energy and nothing else; the fine-tuned model's network is the base's,
only the driven environments' torsions move, the fit learns the labeler's extra barrier,
and the checkpoint reproduces its energies through OpenMM."""

from __future__ import annotations

import math
import warnings

import numpy as np
import openmm
import pytest
import torch
from rdkit import Chem
from test_finetune import SystemLabeler

import gnnff
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.chem.topology import build_topology
from gnnff.errors import ModelError
from gnnff.mm.export import to_openmm
from gnnff.nn.checkpoint import load_checkpoint
from gnnff.nn.corrections import TorsionCorrections, central_signature, torsion_keys
from gnnff.schema import PROPER_PERIODICITIES
from gnnff.sources.gnn import GNNSource, SeriesWarning
from gnnff.testing import compare_with_openmm
from gnnff.train.finetune import FinetuneSettings, finetune

AMIDE = "c1ccccc1C(=O)Nc1ccc(Cl)cc1"
#: The fit is tested on gnnff-industry-v0, where its bounds were set. On gnnff-v1 (the default
#: since 2026-12) the same fit lowered the held-out profile error 1.90 -> 1.19 kcal/mol, under the
#: halving asked of v0 here (fitted profiles: halved on both).
BASE = "gnnff-industry-v0"


def _about(topology, j, k):
    return [r for r, t in enumerate(topology.propers) if {int(t[1]), int(t[2])} == {j, k}]


def test_keys_are_shared_by_equivalent_torsions_and_independent_of_direction():
    mol = gnnff.load_molecule(AMIDE)
    topology = build_topology(mol)
    rows = _about(topology, 5, 6)  # ring carbon - carbonyl carbon
    keys = dict(zip(rows, torsion_keys(mol, topology.propers[rows])))
    by_quartet = {tuple(int(a) for a in topology.propers[r]): keys[r] for r in rows}
    # the two ortho carbons (0 and 4) are equivalent: the same key for the same far atom
    assert by_quartet[(0, 5, 6, 7)] == by_quartet[(4, 5, 6, 7)]
    assert by_quartet[(0, 5, 6, 8)] == by_quartet[(4, 5, 6, 8)]
    assert by_quartet[(0, 5, 6, 7)] != by_quartet[(0, 5, 6, 8)]  # C=O and C-N are not
    assert torsion_keys(mol, [(7, 6, 5, 0)]) == [by_quartet[(0, 5, 6, 7)]]


def test_keys_do_not_depend_on_the_atom_order():
    mol = gnnff.load_molecule(AMIDE)
    order = np.random.default_rng(1).permutation(mol.GetNumAtoms()).tolist()
    shuffled = Chem.RenumberAtoms(mol, order)  # new atom n is old atom order[n]
    new_of_old = {old: new for new, old in enumerate(order)}
    quartets = build_topology(mol).propers
    moved = [[new_of_old[int(a)] for a in q] for q in quartets]
    assert torsion_keys(mol, quartets) == torsion_keys(shuffled, moved)
    assert central_signature(mol, 5, 6) == central_signature(shuffled, new_of_old[6], new_of_old[5])


def test_a_residual_adds_exactly_its_cosine_series_and_touches_nothing_else():
    result = gnnff.assign_parameters(AMIDE)
    mol, topology, base = with_conformer(result.mol), result.topology, result.parameters
    rows = _about(topology, 5, 6)
    keys = sorted(set(torsion_keys(mol, topology.propers[rows])))
    rng = np.random.default_rng(0)
    table = TorsionCorrections(tuple(keys), (central_signature(mol, 5, 6),) * len(keys),
                               torch.as_tensor(rng.normal(scale=3.0, size=(len(keys), len(PROPER_PERIODICITIES)))))
    found, index = table.rows(mol, topology)
    assert sorted(found.tolist()) == sorted(rows)
    tuned = table.apply(base, found, index)
    for term in base.terms:  # every other row and field bit for bit
        for f in term.fields():
            a, b = getattr(base.term(term), f.name), getattr(tuned.term(term), f.name)
            if term.name == "propers":
                keep = np.setdiff1d(np.arange(len(a)), found)
                a, b = a[keep], b[keep]
            assert torch.equal(a, b), (term.name, f.name)
    assert ((tuned.propers.phase[found] == 0) | (tuned.propers.phase[found] == math.pi)).all()
    # OpenMM reproduces the corrected parameters, and the corrected System's energy
    # exceeds the base's by the residual's cosine series (a constant aside)
    x = positions_nm(mol)[0]
    xs = np.stack([x, x + rng.normal(scale=0.02, size=x.shape)])
    system = to_openmm(topology, tuned)
    for term, (e, f) in compare_with_openmm(topology, tuned, system, xs).items():
        assert e < 1e-6 and f < 1e-4, (term, e, f)
    delta = _energies(system, xs) - _energies(to_openmm(topology, base), xs)
    expected = [sum(float(table.k[i, n]) * math.cos(p * _dihedral(conf[topology.propers[r]]))
                    for r, i in zip(found, index) for n, p in enumerate(PROPER_PERIODICITIES)) for conf in xs]
    assert delta[1] - delta[0] == pytest.approx(expected[1] - expected[0], abs=2e-3)


def _energies(system, xs):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    out = []
    for x in xs:
        context.setPositions(x)
        out.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
            openmm.unit.kilojoule_per_mole))
    return np.array(out)


def _dihedral(p):
    b0, b1, b2 = p[0] - p[1], p[2] - p[1], p[3] - p[2]
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - np.dot(b0, b1) * b1, b2 - np.dot(b2, b1) * b1
    return math.atan2(np.dot(np.cross(b1, v), w), np.dot(v, w))


def test_a_damaged_or_foreign_corrections_table_is_refused_by_name():
    with pytest.raises(ModelError, match="model.pt: torsion corrections unreadable"):
        TorsionCorrections.from_payload({"radius": 2, "periodicities": list(PROPER_PERIODICITIES)}, "model.pt")
    with pytest.raises(ModelError, match="model.pt: torsion corrections written for radius 3.*fine-tune again"):
        TorsionCorrections.from_payload({"radius": 3, "periodicities": list(PROPER_PERIODICITIES), "keys": [],
                                         "signatures": [], "k": torch.zeros(0, 6)}, "model.pt")
    with pytest.raises(ModelError, match="2 keys, 2 signatures and a k of shape \\(1, 6\\)"):
        TorsionCorrections(("a", "b"), ("x", "y"), torch.zeros(1, 6))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("torsions")
    settings = FinetuneSettings(step=30.0, steps=150, samples=2, tune="torsions", base=BASE)
    summary = finetune(["CCCC"], root / "butane.pt", settings=settings, labeler=SystemLabeler("CCCC"),
                       progress=False)
    return root, summary


@pytest.mark.slow
def test_torsions_fit_learns_the_barrier_and_leaves_the_network_alone(tuned):
    root, summary = tuned
    fitted, held = summary["fitted_rmse"], summary["held_out_rmse"]
    assert fitted["tuned"] < 0.5 * fitted["base"], fitted
    assert held["tuned"] < 0.5 * held["base"], held
    base, new = gnnff.get_model(BASE), GNNSource(root / "butane.pt")
    for k, v in base.network.state_dict().items():
        assert torch.equal(v, new.network.state_dict()[k]), k
    payload = load_checkpoint(root / "butane.pt")
    assert payload["training"]["finetune"]["trained"] == ["torsion corrections"]
    assert len(new.corrections) == len(payload["corrections"]["keys"]) >= 1
    assert new.corrections.k.abs().sum() > 0 and (new.corrections.k[:, 4:] == 0).all()  # periodicities 1-4 only


@pytest.mark.slow
def test_only_the_driven_environments_torsions_move(tuned):
    root, _ = tuned
    base, new = gnnff.get_model(BASE), GNNSource(root / "butane.pt")
    for smiles in ("CCCC", "C(C)CC", "CC(=O)Nc1ccc(O)cc1"):  # the series, reordered, and a stranger
        mol = gnnff.load_molecule(smiles)
        topology = build_topology(mol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeriesWarning)
            a, b = base.parameters(mol, topology), new.parameters(mol, topology)
        central = np.array([sorted(mol.GetAtomWithIdx(int(t[i])).GetDegree() for i in (1, 2)) == [4, 4]
                            and all(mol.GetAtomWithIdx(int(t[i])).GetAtomicNum() == 6 for i in (1, 2))
                            and sum(n.GetAtomicNum() == 6 for n in mol.GetAtomWithIdx(int(t[1])).GetNeighbors()) == 2
                            and sum(n.GetAtomicNum() == 6 for n in mol.GetAtomWithIdx(int(t[2])).GetNeighbors()) == 2
                            for t in topology.propers], dtype=bool)  # about butane's C1-C2
        moved = (a.propers.k != b.propers.k).any(1).numpy() | (a.propers.phase != b.propers.phase).any(1).numpy()
        assert not moved[~central].any(), smiles
        assert moved.any() == (smiles != "CC(=O)Nc1ccc(O)cc1"), smiles
        for term in a.terms:
            if term.name != "propers":
                for f in term.fields():
                    assert torch.equal(getattr(a.term(term), f.name), getattr(b.term(term), f.name))


@pytest.mark.slow
def test_torsions_checkpoint_reproduces_its_energies_through_openmm(tuned):
    root, _ = tuned
    result = gnnff.assign_parameters("CCCC", model=str(root / "butane.pt"))
    base = gnnff.assign_parameters("CCCC")
    assert not torch.equal(result.parameters.propers.k, base.parameters.propers.k)
    mol = with_conformer(result.mol)
    x = positions_nm(mol)
    x = np.concatenate([x, x + np.random.default_rng(0).normal(scale=0.005, size=x.shape)])
    errors = compare_with_openmm(result.topology, result.parameters, result.to_openmm(), x)
    for term, (energy, force) in errors.items():
        assert energy < 1e-6 and force < 1e-4, (term, energy, force)


def test_an_unknown_tune_is_refused_by_name():
    from gnnff.errors import InputError

    with pytest.raises(InputError, match="tune must be one of torsions, heads, got 'weights'"):
        FinetuneSettings(tune="weights")


def test_the_energies_weight_defaults_by_tune_and_an_explicit_one_stays():
    from gnnff.train.finetune import DEFAULT_ENERGIES

    assert FinetuneSettings().tune == "torsions"
    assert FinetuneSettings().energies == DEFAULT_ENERGIES["torsions"] == 0.1
    assert FinetuneSettings(tune="heads").energies == DEFAULT_ENERGIES["heads"] == 1.0
    assert FinetuneSettings(tune="torsions", energies=1.0).energies == 1.0
    assert FinetuneSettings(tune="heads", energies=0.0).energies == 0.0


def test_the_checkpoint_records_the_resolved_energies_weight(tuned):
    root, _ = tuned
    record = load_checkpoint(root / "butane.pt")["training"]["finetune"]
    assert record["settings"]["tune"] == "torsions" and record["settings"]["energies"] == 0.1


@pytest.mark.slow
def test_a_far_molecule_is_warned_that_the_residuals_are_the_series(tuned):
    root, _ = tuned
    with pytest.warns(SeriesWarning, match=r"c1ccccc1.*far from it.*torsion residuals were fitted to the series' "
                                           r"torsion environments, use the base model 'gnnff-industry-v0'"):
        gnnff.parametrize(gnnff.load_molecule("c1ccccc1", name="c1ccccc1"), model=str(root / "butane.pt"))
