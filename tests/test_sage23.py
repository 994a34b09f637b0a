"""Model ``sage-2.3``: OpenFF Sage 2.3.0 valence and LJ with its NAGL charges (charge method
``nagl``), checked against Systems made by the OpenFF toolkit itself; model ``sage`` unchanged.

The reference Systems (tests/data/sage23/NAME.xml) are ``ForceField.create_openmm_system`` of
``openff_unconstrained-2.3.0.offxml`` through openff-interchange 0.5 (Python 3.12), with the
charges the toolkit's NAGLToolkitWrapper gives for the offxml's ``<NAGLCharges>`` model (the
call interchange makes for that section; NAGL itself could not be installed beside
interchange): see tests/data/sage23/make_reference.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openmm
import pytest
from rdkit import Chem

import gnnff
from gnnff.schema import ANGLES, BONDS, IMPROPERS, NONBONDED, PROPERS
from gnnff.testing import openmm_terms

DATA = Path(__file__).resolve().parent / "data" / "sage23"
REFERENCE = json.loads((DATA / "nagl_charges.json").read_text())

needs_nagl = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("openff.nagl", "openff.nagl_models", "pytorch_lightning")),
    reason="OpenFF NAGL not installed (pip install 'gnnff[nagl]')")


def _reference_molecules() -> dict[str, Chem.Mol]:
    supplier = Chem.SDMolSupplier(str(DATA / "molecules.sdf"), removeHs=False)
    return {mol.GetProp("_Name"): mol for mol in supplier}


def _by_term(system: openmm.System, mol: Chem.Mol) -> openmm.System:
    """The toolkit's System with each force in gnnff's force group of its term; its one
    PeriodicTorsionForce split into propers (bonded chains) and impropers (centre first)."""
    system = openmm.XmlSerializer.clone(system)
    bonded = {frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in mol.GetBonds()}
    groups = {"HarmonicBondForce": BONDS, "HarmonicAngleForce": ANGLES,
              "PeriodicTorsionForce": PROPERS, "NonbondedForce": NONBONDED}
    impropers = openmm.PeriodicTorsionForce()
    impropers.setForceGroup(IMPROPERS.force_group)
    for force in system.getForces():
        force.setForceGroup(groups[type(force).__name__].force_group if type(force).__name__ in groups else 31)
        if not isinstance(force, openmm.PeriodicTorsionForce):
            continue
        for t in range(force.getNumTorsions()):
            *atoms, n, phase, k = force.getTorsionParameters(t)
            chain = all(frozenset(p) in bonded for p in zip(atoms, atoms[1:]))
            centre = all(frozenset((atoms[0], a)) in bonded for a in atoms[1:])
            assert chain != centre, f"torsion {atoms} is neither proper nor improper"
            if centre:
                impropers.addTorsion(*atoms, n, phase, k)
                force.setTorsionParameters(t, *atoms, n, phase, 0.0)
    system.addForce(impropers)
    return system


@pytest.fixture(scope="module")
def sage23_results():
    pytest.importorskip("openff.nagl", reason="OpenFF NAGL not installed (pip install 'gnnff[nagl]')")
    return {name: gnnff.assign_parameters(mol, model="sage-2.3") for name, mol in _reference_molecules().items()}


@needs_nagl
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCE["charges"]))
def test_energies_match_the_openff_toolkit_term_by_term(sage23_results, name):
    mol = _reference_molecules()[name]
    ours = sage23_results[name].to_openmm()
    reference = _by_term(openmm.XmlSerializer.deserialize((DATA / f"{name}.xml").read_text()), mol)
    x0 = mol.GetConformer().GetPositions() / 10.0  # nm
    rng = np.random.default_rng(11)
    geometries = [x0, x0 + rng.normal(0, 0.005, x0.shape), x0 + rng.normal(0, 0.02, x0.shape)]
    ours_e = [openmm_terms(ours, x) for x in geometries]
    ref_e = [openmm_terms(reference, x) for x in geometries]
    for term in (BONDS, ANGLES, PROPERS, IMPROPERS, NONBONDED):
        g = term.force_group
        for a, b in zip(ours_e, ref_e):
            np.testing.assert_allclose(a[g][1], b[g][1], rtol=1e-7, atol=1e-5, err_msg=f"{name} {term.name} forces")
            # merged same-periodicity cosines shift proper energies by a constant: compare differences
            shift = 0.0 if term is not PROPERS else (ours_e[0][g][0] - ref_e[0][g][0])
            assert a[g][0] - shift == pytest.approx(b[g][0], rel=1e-8, abs=1e-6), (name, term.name)
    assert abs(ours_e[0][PROPERS.force_group][0] - ref_e[0][PROPERS.force_group][0]) < 1e-6 or \
        name.startswith("thioester"), f"{name}: proper energies differ by more than a merged-cosine constant"


@needs_nagl
@pytest.mark.slow
def test_charges_and_lennard_jones_are_the_toolkits(sage23_results):
    assert REFERENCE["offxml"] == "openff_unconstrained-2.3.0.offxml"
    for name, result in sage23_results.items():
        p = result.parameters.nonbonded
        np.testing.assert_allclose(p.charge.numpy(), REFERENCE["charges"][name], rtol=0, atol=1e-12, err_msg=name)
        reference = openmm.XmlSerializer.deserialize((DATA / f"{name}.xml").read_text())
        force = next(f for f in reference.getForces() if isinstance(f, openmm.NonbondedForce))
        q, sigma, eps = zip(*((a._value for a in force.getParticleParameters(i)) for i in range(force.getNumParticles())))
        np.testing.assert_allclose(p.charge.numpy(), q, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(p.sigma.numpy(), sigma, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(p.epsilon.numpy(), eps, rtol=1e-12, err_msg=name)


def test_the_nagl_charge_method_is_the_model_sage_2_3_names():
    from openff.toolkit import ForceField

    from gnnff.sources.charges import NAGL_MODEL, NAGL_MODEL_SHA256
    from gnnff.sources.classical import SAGE_RELEASES

    release = SAGE_RELEASES["sage-2.3"]
    handler = ForceField(release.offxml).get_parameter_handler("NAGLCharges")
    assert (handler.model_file, handler.model_file_hash) == (NAGL_MODEL, NAGL_MODEL_SHA256)
    assert release.charges == "nagl" and REFERENCE["nagl_model"] == NAGL_MODEL


@needs_nagl
@pytest.mark.slow
def test_nagl_charges_are_nagls_own(sage23_results):
    """Charge method 'nagl' through gnnff equals openff.nagl's GNNModel on the same molecule."""
    from openff.nagl import GNNModel
    from openff.nagl_models import validate_nagl_model_path
    from openff.toolkit import Molecule

    from gnnff.sources.charges import _nagl_model

    assert _nagl_model() is _nagl_model()  # loaded once per process
    model = GNNModel.load(str(validate_nagl_model_path(REFERENCE["nagl_model"])), eval_mode=True)
    for smiles in ("CC(=O)Oc1ccccc1C(=O)O", "C[NH+]1CCN(CC1)C(=O)c1ccccc1", "COP(=O)([O-])[O-]"):
        ours = gnnff.assign_parameters(smiles, model="sage-2.3")
        offmol = Molecule.from_rdkit(ours.mol, hydrogens_are_explicit=True, allow_undefined_stereo=True)
        theirs = model.compute_property(offmol, as_numpy=True, readout_name="am1bcc_charges").astype(float)
        theirs += (offmol.total_charge.m - theirs.sum()) / len(theirs)
        np.testing.assert_allclose(ours.parameters.nonbonded.charge.numpy(), theirs, rtol=0, atol=1e-12, err_msg=smiles)


@needs_nagl
@pytest.mark.slow
@pytest.mark.parametrize("smiles, charge", [("CC(=O)[O-]", -1), ("C[NH3+]", 1), ("[NH3+]CC(=O)[O-]", 0),
                                            ("COP(=O)([O-])[O-]", -2), ("[Na+].CC(=O)[O-]", 0)])
def test_charges_sum_to_the_net_charge(smiles, charge):
    q = gnnff.assign_parameters(smiles, model="sage-2.3").parameters.nonbonded.charge.numpy()
    assert abs(q.sum() - charge) < 1e-12


@needs_nagl
@pytest.mark.slow
def test_symmetric_atoms_get_equal_charges_whatever_the_resonance_form():
    drawn = {smiles: gnnff.assign_parameters(smiles, model="sage-2.3").parameters.nonbonded.charge.numpy()
             for smiles in ("CC(=O)[O-]", "CC([O-])=O")}
    for q in drawn.values():
        assert q[2] == pytest.approx(q[3], abs=1e-6)  # the carboxylate oxygens
    np.testing.assert_allclose(*drawn.values(), atol=1e-6)


@needs_nagl
@pytest.mark.slow
def test_library_charges_cover_water_and_the_nagl_method_serves_sage_too():
    water = gnnff.assign_parameters("O", model="sage-2.3").parameters.nonbonded.charge.numpy()
    np.testing.assert_allclose(water, [-0.834, 0.417, 0.417], atol=1e-12)
    sage22 = gnnff.assign_parameters("CCO", model="sage", charges="nagl").parameters.nonbonded.charge
    sage23 = gnnff.assign_parameters("CCO", model="sage-2.3").parameters.nonbonded.charge
    assert np.array_equal(sage22.numpy(), sage23.numpy())


def test_unknown_element_is_refused_before_any_slow_work(monkeypatch):
    from gnnff.sources import charges, classical

    def slow(*args):
        raise AssertionError("the force field or the NAGL model was loaded before the element check")

    monkeypatch.setattr(classical, "_force_field", slow)
    monkeypatch.setattr(charges, "_nagl_model", slow)
    monkeypatch.setattr(classical, "unavailable", lambda method: None)  # also where NAGL is absent
    source = gnnff.get_model("sage-2.3")
    start = time.perf_counter()
    with pytest.raises(gnnff.ParametrizationError,
                       match=r"^C\[Si\]\(C\)\(C\)C: atom 1 \(Si\) is an element Sage does not cover; [^\n]*$"):
        gnnff.assign_parameters("C[Si](C)(C)C", model=source)
    assert time.perf_counter() - start < 2.0


def test_missing_nagl_is_one_line_saying_what_to_install(monkeypatch):
    from gnnff.sources import charges

    monkeypatch.setitem(sys.modules, "openff.nagl", None)  # import and find_spec both fail
    install = "pip install acellera-openff-nagl acellera-openff-nagl-models pytorch-lightning"
    with pytest.raises(gnnff.ModelError, match=rf"^model 'sage-2.3': charge method 'nagl' needs openff\.nagl, "
                                               rf"not installed; {install}$"):
        gnnff.get_model("sage-2.3")
    with pytest.raises(gnnff.ParametrizationError, match=rf"^charge method 'nagl' needs OpenFF NAGL, .*; {install}$"):
        charges._nagl_model.__wrapped__()  # the loader itself, past its cache
    assert gnnff.get_model("sage", charges="am1bcc").charges == "am1bcc"  # other methods unaffected


def test_force_fields_gnnff_cannot_carry_are_refused_by_name():
    from openff.toolkit import ForceField

    from gnnff.sources.classical import _check_supported

    offxml = "openff_unconstrained-2.3.0.offxml"
    _check_supported(ForceField(offxml), offxml)  # Sage 2.3.0 itself is carried whole
    vsites = ('<SMIRNOFF version="0.3" aromaticity_model="OEAroModel_MDL"><VirtualSites version="0.3" '
              'exclusion_policy="parents"></VirtualSites></SMIRNOFF>')
    with pytest.raises(gnnff.ParametrizationError, match=r"cannot carry its section\(s\) VirtualSites"):
        _check_supported(ForceField(offxml, vsites), offxml)
    scaled = ForceField(offxml)
    scaled.get_parameter_handler("Electrostatics").scale14 = 0.5
    with pytest.raises(gnnff.ParametrizationError, match=r"Electrostatics scale14 is 0.5; gnnff's Systems use 0.8333"):
        _check_supported(scaled, offxml)


def test_sage_is_unchanged():
    """Model 'sage' (Sage 2.2): the same source, and for these molecules the same System XML,
    byte for byte, as before sage-2.3 (digests made with that code: make_sage22_digests.py)."""
    from gnnff.mm.export import system_xml
    from gnnff.sources.classical import SageSource

    assert repr(SageSource()) == "SageSource(charges='am1bcc', offxml='openff-2.2.0.offxml')"
    assert gnnff.get_model("sage").name == "sage"
    expected = json.loads((DATA / "sage22_digests.json").read_text())
    for smiles, digest in expected["digests"].items():
        result = gnnff.assign_parameters(smiles, model="sage", charges=expected["charges"])
        got = hashlib.sha256(system_xml(result.topology, result.parameters).encode()).hexdigest()
        assert got == digest, smiles


def test_models_lists_sage_2_3(tmp_path):
    assert "sage-2.3" in gnnff.available_models()
    result = subprocess.run([sys.executable, "-m", "gnnff", "models"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0 and "\nsage-2.3\n" in result.stdout, result.stderr
    entry = result.stdout.split("\nsage-2.3\n")[1]
    assert entry.splitlines()[0].split(None, 1) == [
        "description", "OpenFF Sage 2.3.0 + NAGL openff-gnn-am1bcc-1.0.0 (openff_unconstrained-2.3.0.offxml, classical)"]
    assert entry.splitlines()[2].split()[:2] == ["charges", "nagl"]  # its own default, not Sage 2.2's


@needs_nagl
@pytest.mark.slow
def test_cli_parametrizes_with_sage_2_3(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gnnff", "parametrize", "CCO", "--model", "sage-2.3", "-o", "x.xml"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    system = openmm.XmlSerializer.deserialize((tmp_path / "x.xml").read_text())
    force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = [force.getParticleParameters(i)[0]._value for i in range(system.getNumParticles())]
    direct = gnnff.assign_parameters("CCO", model="sage-2.3").parameters.nonbonded.charge.numpy()
    np.testing.assert_allclose(charges, direct, rtol=0, atol=1e-15)
