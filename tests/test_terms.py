"""The term schema drives every stage: an opt-in term (Urey-Bradley) goes through the
network, the energy, the System, every output format and checkpoints, exactly; a
checkpoint without it loads with the term absent; a damaged one names the term."""

from __future__ import annotations

import math

import numpy as np
import openmm
import pytest
import torch
from openmm import app
from test_formats import _read_back

import gnnff
from gnnff.app.formats import FORMATS, write_parametrized
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.errors import ModelError
from gnnff.mm.energy import compute_energy
from gnnff.nn.checkpoint import load_checkpoint
from gnnff.nn.network import NetworkConfig
from gnnff.schema import REQUIRED_TERMS, TERMS, UREY_BRADLEYS, ForceFieldParameters, term_by_name
from gnnff.testing import assert_parameters_permute, compare_with_openmm, energies_by_force


def test_schema_declares_what_every_stage_reads():
    """Each term names a form the energy and exporter know, an enumerator, a unique force
    group, a symmetry group starting at the identity and an expansion inside its tuple."""
    from gnnff.mm.energy import _FORM_ENERGY
    from gnnff.mm.export import _ADD, _ELEMENT
    from gnnff.nn.network import HEADS
    from gnnff.openmm.templates import _FFXML_WRITERS

    groups = [t.force_group for t in TERMS]
    assert len(set(groups)) == len(groups)
    assert not any(t.optional for t in REQUIRED_TERMS) and UREY_BRADLEYS.optional
    for term in TERMS:
        assert term.symmetry[0] == tuple(range(term.arity)), term.name
        assert all(sorted(p) == list(range(term.arity)) for p in term.symmetry), term.name
        assert all(max(order) < term.arity for order in term.expansion), term.name
        assert term.name in HEADS and term.name in _FFXML_WRITERS, term.name
        if term.form != "nonbonded":
            assert term.form in _FORM_ENERGY and term.form in _ADD and term.form in _ELEMENT, term.name
        assert term_by_name(term.name) is term
    with pytest.raises(KeyError, match="unknown term 'cmap'; known: bonds, angles"):
        term_by_name("cmap")


def test_parameters_require_the_required_terms_and_only_known_ones():
    result = gnnff.assign_parameters("CCO", model="sage", charges="mmff94")
    containers = {t.name: result.parameters.term(t) for t in result.parameters.terms}
    assert not result.parameters.has(UREY_BRADLEYS)
    with pytest.raises(AttributeError, match="no 'urey_bradleys' term"):
        result.parameters.urey_bradleys  # noqa: B018
    with pytest.raises(TypeError, match=r"required term\(s\) \['angles'\] missing"):
        ForceFieldParameters(**{k: v for k, v in containers.items() if k != "angles"})
    with pytest.raises(TypeError, match=r"unknown term\(s\) \['cmap'\]"):
        ForceFieldParameters(**containers, cmap=containers["bonds"])
    with pytest.raises(TypeError, match="urey_bradleys: expected UreyBradleyParameters, got BondParameters"):
        ForceFieldParameters(**containers, urey_bradleys=containers["bonds"])
    with pytest.raises(AttributeError, match="immutable"):
        result.parameters.bonds = containers["bonds"]


def test_urey_bradley_tuples_are_the_angles_and_batch_with_offsets(small_molecules):
    top = gnnff.build_topology(gnnff.load_molecule(small_molecules["aspirin"]))
    np.testing.assert_array_equal(top.urey_bradleys, top.angles)
    batch = gnnff.Topology.batch([top, top])
    np.testing.assert_array_equal(batch.urey_bradleys[len(top.angles):], top.angles + top.n_atoms)
    assert batch.counts()[UREY_BRADLEYS.name] == 2 * len(top.angles)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["aspirin", "glycine_zwitterion", "cyclopropane"])
def test_urey_bradley_model_matches_openmm_term_by_term(urey_bradley_model, small_molecules, name, dtype):
    result = gnnff.assign_parameters(small_molecules[name], model=str(urey_bradley_model))
    assert result.parameters.terms == TERMS
    ub = result.parameters.urey_bradleys
    assert float(ub.k.min()) > 1e3 and float(ub.k.std()) > 0  # sizeable and atom-dependent
    system = result.to_openmm()
    assert [f.getName() for f in system.getForces()] == [t.name for t in TERMS]
    ub_force = system.getForce(len(TERMS) - 1)
    assert isinstance(ub_force, openmm.HarmonicBondForce) and ub_force.getForceGroup() == UREY_BRADLEYS.force_group
    assert ub_force.getNumBonds() == len(result.topology.angles)
    rng = np.random.default_rng(1)
    x = positions_nm(result.mol) + rng.normal(scale=0.01, size=(3, result.mol.GetNumAtoms(), 3))
    parameters = result.parameters.to(dtype)
    tolerance = (1e-6, 1e-4) if dtype == torch.float64 else (1e-5, 5e-2)
    for term, (de, df) in compare_with_openmm(result.topology, parameters.to(torch.float64), system, x).items():
        assert de < tolerance[0] and df < tolerance[1], (term, de, df)
    energies = compute_energy(result.topology, parameters, torch.as_tensor(x, dtype=dtype))
    assert energies[UREY_BRADLEYS.name].dtype == dtype
    by_hand = 0.0
    for (i, _, k), kk, r0 in zip(result.topology.urey_bradleys, ub.k.tolist(), ub.length.tolist()):
        by_hand += 0.5 * kk * (np.linalg.norm(x[0, i] - x[0, k]) - r0) ** 2
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    assert float(energies[UREY_BRADLEYS.name][0, 0]) == pytest.approx(by_hand, rel=rel)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_urey_bradley_through_every_output_format(urey_bradley_model, tmp_path, fmt):
    """XML, ffxml (AmoebaUreyBradleyForce), Amber (CHAMBER prmtop) and GROMACS (angle
    function 5) all give OpenMM the System's energy and forces, Urey-Bradley included."""
    result = gnnff.assign_parameters("CC(=O)Nc1ccc(O)cc1", model=str(urey_bradley_model))
    files = write_parametrized(result, tmp_path / f"apap{FORMATS[fmt][0]}", fmt)
    system, _ = _read_back(fmt, files, result)
    x = positions_nm(with_conformer(result.mol))[0]
    original, reread = energies_by_force(result.to_openmm(), x), energies_by_force(system, x)
    bonds_only = energies_by_force(gnnff.to_openmm(result.topology, result.parameters.replace()), x)
    assert set(reread) == set(original)
    rtol, force_atol = (1e-12, 1e-7) if fmt in ("xml", "ffxml") else (1e-6, 1e-2)
    for force, (energy, forces) in original.items():
        assert reread[force][0] == pytest.approx(energy, rel=rtol, abs=rtol), f"{fmt} {force}"
        np.testing.assert_allclose(reread[force][1], forces, atol=force_atol * max(1.0, np.abs(forces).max()),
                                   err_msg=f"{fmt} {force}")
    ub_energy = compute_energy(result.topology, result.parameters, torch.as_tensor(x))[UREY_BRADLEYS.name]
    assert float(ub_energy) > 1.0  # the term is there to be lost
    assert bonds_only["HarmonicBondForce"][0] == pytest.approx(original["HarmonicBondForce"][0])


def test_urey_bradley_parameters_permute_with_the_atoms(urey_bradley_model, small_molecules):
    from rdkit import Chem

    mol = gnnff.load_molecule(small_molecules["aspirin"])
    order = np.random.default_rng(5).permutation(mol.GetNumAtoms())
    shuffled = Chem.RenumberAtoms(mol, order.tolist())
    a = gnnff.assign_parameters(mol, model=str(urey_bradley_model))
    b = gnnff.assign_parameters(shuffled, model=str(urey_bradley_model))
    assert_parameters_permute((a.topology, a.parameters), (b.topology, b.parameters), order, atol=1e-5, rtol=1e-5)


class _UreyBradleyOnLargeParts:
    """A source that provides Urey-Bradley terms for components of 8 atoms or more only."""

    name = "ub-on-large-parts"

    def __init__(self, path):
        self.base = gnnff.get_model(str(path))
        self.elements = self.base.elements

    def parameters(self, mol, topology):
        p = self.base.parameters(mol, topology)
        if mol.GetNumAtoms() >= 8:
            return p
        return ForceFieldParameters(**{t.name: p.term(t) for t in p.terms if t is not UREY_BRADLEYS})


def test_components_without_the_term_get_zeros(urey_bradley_model):
    """A record of two components whose source provides the optional term for one only:
    the other's rows are zeros (``Term.zeros``), the rest equal the component's own."""
    source = _UreyBradleyOnLargeParts(urey_bradley_model)
    result = gnnff.assign_parameters("CC(=O)[O-].C[NH3+]", model=source)
    k = result.parameters.urey_bradleys.k
    assert k.shape == (len(result.topology.angles),)
    amine = gnnff.assign_parameters("C[NH3+]", model=str(urey_bradley_model)).parameters.urey_bradleys
    assert int((k == 0).sum()) == 9  # acetate (7 atoms): its nine angles
    assert sorted(k[k != 0].tolist()) == pytest.approx(sorted(amine.k.tolist()), rel=1e-6)
    zeros = UREY_BRADLEYS.zeros(4)
    assert zeros.k.shape == (4,) and float(zeros.k.abs().sum()) == 0.0


def test_checkpoint_without_the_term_loads_with_it_absent(small_molecules):
    """gnnff-industry-v0 was written before terms were recorded: it serves the required terms."""
    payload = load_checkpoint(gnnff.get_model("gnnff-industry-v0").path)
    assert "terms" not in payload
    result = gnnff.assign_parameters(small_molecules["aspirin"])
    assert result.parameters.terms == REQUIRED_TERMS
    assert len(result.to_openmm().getForces()) == len(REQUIRED_TERMS)


def test_checkpoint_records_its_terms(urey_bradley_model):
    payload = load_checkpoint(urey_bradley_model)
    assert list(payload["terms"]) == [t.name for t in TERMS]
    assert payload["terms"][UREY_BRADLEYS.name] == {
        "arity": 3, "periodicities": [], "form": "harmonic_bond",
        "parameters": {"k": "kJ/mol/nm**2", "length": "nm"}}
    assert payload["network"]["optional_terms"] == ["urey_bradleys"]


def _edited(source, tmp_path, edit):
    payload = load_checkpoint(source)
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return str(path)


def test_damaged_checkpoints_name_the_term(urey_bradley_model, tmp_path):
    def drop_head(payload):
        payload["state_dict"] = {k: v for k, v in payload["state_dict"].items()
                                 if not k.startswith("heads.urey_bradleys.")}

    def unknown_term(payload):
        payload["terms"]["cmap"] = {"arity": 5}

    def changed_term(payload):
        payload["terms"]["angles"] = {**payload["terms"]["angles"], "form": "cosine_angle"}

    def config_without_term(payload):
        payload["network"]["optional_terms"] = []

    def term_without_head(payload):
        del payload["terms"]["urey_bradleys"]

    cases = [(drop_head, "no weights for the 'urey_bradleys' head"),
             (unknown_term, "serves term 'cmap', which this gnnff .* does not know"),
             (changed_term, "term 'angles' was trained as"),
             (config_without_term, "weights for a 'urey_bradleys' head its config does not name"),
             (term_without_head, "no head for term 'urey_bradleys'")]
    for edit, message in cases:
        with pytest.raises(ModelError, match=message):
            gnnff.assign_parameters("CCO", model=_edited(urey_bradley_model, tmp_path, edit))


def test_network_config_rejects_unknown_optional_terms():
    with pytest.raises(ModelError, match=r"optional_terms \['angles'\] are not opt-in terms"):
        NetworkConfig.from_dict({"optional_terms": ["angles"]})
    assert NetworkConfig.from_dict({"optional_terms": ["urey_bradleys"]}).terms == TERMS
    assert NetworkConfig().terms == REQUIRED_TERMS
    # a checkpoint without opt-in terms carries no optional_terms key (older gnnff reads it)
    assert "optional_terms" not in NetworkConfig().to_dict()
    assert NetworkConfig.from_dict(NetworkConfig().to_dict()) == NetworkConfig()


def test_ffxml_with_urey_bradley_in_a_forcefield_beside_amber(urey_bradley_model):
    """The template generator's ffxml carries the Urey-Bradley element: a ForceField
    System of the ligand has the same HarmonicBondForce energy as gnnff's."""
    from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology

    result = gnnff.assign_parameters("CC(=O)Oc1ccccc1C(=O)O", model=str(urey_bradley_model))
    generator = GNNFFTemplateGenerator(molecules=[result.mol], forcefield=str(urey_bradley_model))
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(generator.generator)
    system = forcefield.createSystem(to_openmm_topology(result.mol), nonbondedMethod=app.NoCutoff, constraints=None)
    x = positions_nm(with_conformer(result.mol))[0]
    ours, theirs = energies_by_force(result.to_openmm(), x), energies_by_force(system, x)
    for force, (energy, _) in ours.items():
        assert theirs[force][0] == pytest.approx(energy, rel=1e-9), force
    assert math.isfinite(ours["HarmonicBondForce"][0])
