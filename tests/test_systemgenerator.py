"""gnnff as openmmforcefields' peer: SystemGenerator, chains of generators, the
single-file cache, user charges, molecules spanning several residues.

The ligand's energies in a System built through ``SystemGenerator`` (or ``ForceField``
with the generator) must equal those of gnnff's own System of the ligand, force by
force, on OpenMM's Reference platform.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import openmm
import pytest
from conftest import embedded
from openmm import app, unit
from openmm.app.element import Element
from rdkit import Chem

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology
from gnnff.testing import energies_by_force, subsystem

generators = pytest.importorskip("openmmforcefields.generators", reason="openmmforcefields is not installed")
Molecule = pytest.importorskip("openff.toolkit", reason="the OpenFF toolkit is not installed").Molecule

JACS = Path(generators.__file__).resolve().parents[1] / "data" / "perses_jacs_systems"
RTOL = 1e-9


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: forces {sorted(a)} vs {sorted(b)}"
    for name, (ea, fa) in a.items():
        eb, fb = b[name]
        assert abs(ea - eb) <= RTOL * max(abs(ea), 1.0), f"{what}: {name} {ea!r} vs {eb!r}"
        np.testing.assert_allclose(fa, fb, atol=1e-6, rtol=0, err_msg=f"{what}: {name} forces")


def _offmol(smiles: str, charges: list[float] | None = None) -> Molecule:
    mol = Molecule.from_smiles(smiles)
    mol.generate_conformers(n_conformers=1)
    if charges is not None:
        mol.partial_charges = _charges(charges)
    return mol


def _charges(values: list[float]):
    from openff.units import unit as offunit

    return np.asarray(values, dtype=float) * offunit.elementary_charge


def _particle_charges(system: openmm.System) -> np.ndarray:
    force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    return np.array([force.getParticleParameters(i)[0]._value for i in range(system.getNumParticles())])


def _build(forcefield: app.ForceField, offmol: Molecule) -> openmm.System:
    return forcefield.createSystem(offmol.to_topology().to_openmm(), nonbondedMethod=app.NoCutoff, constraints=None)


@pytest.fixture
def SystemGenerator():
    """openmmforcefields' SystemGenerator; it tries the espaloma generator before gnnff's,
    whose constructor imports ``validators`` (in gnnff's test extra, not declared by
    acellera-openmmforcefields)."""
    pytest.importorskip("validators", reason="SystemGenerator's espaloma generator needs validators")
    return generators.SystemGenerator


def test_systemgenerator_lists_and_loads_gnnff(SystemGenerator):
    names = SystemGenerator.SMALL_MOLECULE_FORCEFIELDS
    assert "gnnff-industry-v0" in names and "gnnff-sage" in names
    for name in GNNFFTemplateGenerator.INSTALLED_FORCEFIELDS:
        assert name.startswith("gnnff")
    system_generator = SystemGenerator(small_molecule_forcefield="gnnff-industry-v0")
    assert isinstance(system_generator.template_generator, GNNFFTemplateGenerator)
    assert system_generator.template_generator.forcefield == "gnnff-industry-v0"
    with pytest.raises(ValueError, match=r"GNNFFTemplateGenerator: \['gnnff-industry-v0'"):
        SystemGenerator(small_molecule_forcefield="no-such-forcefield")


def test_forcefield_model_alias_and_template_generator_kwargs():
    sage = GNNFFTemplateGenerator(forcefield="gnnff-sage", template_generator_kwargs={"charges": "mmff94"})
    assert sage.model == "sage" and sage.forcefield == "gnnff-sage"
    assert GNNFFTemplateGenerator(model="sage", charges="mmff94").model == "sage"
    with pytest.raises(gnnff.ModelError, match="disagree"):
        GNNFFTemplateGenerator(forcefield="gnnff-industry-v0", model="sage")
    with pytest.raises(gnnff.ModelError, match="unknown model 'gaff-2.11'; known models: gnnff-industry-v0"):
        GNNFFTemplateGenerator(forcefield="gaff-2.11")
    with pytest.raises(gnnff.ModelError, match="does not accept"):
        GNNFFTemplateGenerator(forcefield="gnnff-sage", template_generator_kwargs={"reference_forcefield": "openff-2.2.0"})


@pytest.fixture(scope="module")
def mcl1():
    """Protein and first ligand of the MCL1 system of the JACS benchmark set (Wang et al.
    2015) shipped with openmmforcefields."""
    ligand = Molecule.from_file(str(JACS / "mcl1" / "MCL1_ligands.sdf"), allow_undefined_stereo=True)[0]
    return app.PDBFile(str(JACS / "mcl1" / "MCL1_protein.pdb")), ligand


def test_protein_ligand_complex_through_systemgenerator(SystemGenerator, mcl1, tmp_path):
    """amber14 protein + gnnff ligand; the ligand's terms equal gnnff's own System's."""
    protein, ligand = mcl1
    system_generator = SystemGenerator(
        forcefields=["amber14-all.xml", "amber14/tip3p.xml"], small_molecule_forcefield="gnnff-v1",
        molecules=[ligand], cache=str(tmp_path / "db.json"), forcefield_kwargs={"constraints": None})
    modeller = app.Modeller(protein.topology, protein.positions)
    modeller.add(ligand.to_topology().to_openmm(), ligand.conformers[0].to_openmm())
    system = system_generator.create_system(modeller.topology)
    assert system.getNumParticles() == protein.topology.getNumAtoms() + ligand.n_atoms
    atoms = list(range(protein.topology.getNumAtoms(), system.getNumParticles()))
    x = np.asarray(modeller.positions.value_in_unit(unit.nanometer))[atoms]
    alone = gnnff.parametrize(ligand)
    _assert_same(energies_by_force(alone, x), energies_by_force(subsystem(system, atoms), x), "MCL1 ligand")
    own = system_generator.template_generator.get_openmm_system(ligand)
    _assert_same(energies_by_force(alone, x), energies_by_force(own, x), "get_openmm_system")
    assert np.isclose(_particle_charges(system)[atoms].sum(), -1.0)  # the ligand is a carboxylate
    assert "gnnff" in json.loads((tmp_path / "db.json").read_text())


def test_single_file_cache_is_shared_with_other_tables(tmp_path, monkeypatch):
    db = tmp_path / "db.json"
    other = {"gaff-2.11": {"1": {"smiles": "CCO", "ffxml": "<ForceField/>"}}}
    db.write_text(json.dumps(other))  # an existing cache of another generator
    ethanol = _offmol("CCO")
    first = GNNFFTemplateGenerator(molecules=ethanol, cache=db)
    reference = _build(_registered(first), ethanol)
    data = json.loads(db.read_text())
    assert data["gaff-2.11"] == other["gaff-2.11"] and len(data["gnnff"]) == 1

    import gnnff.openmm.generator as module

    def fail(*args, **kwargs):
        raise AssertionError("parametrized again despite the cache")

    monkeypatch.setattr(module, "assign_parameters", fail)
    cached = _build(_registered(GNNFFTemplateGenerator(molecules=ethanol, cache=db)), ethanol)
    x = ethanol.conformers[0].m_as("nanometer")
    _assert_same(energies_by_force(reference, x), energies_by_force(cached, x), "cached template")
    db.write_text("not json")
    with pytest.raises(gnnff.InputError, match=r"db.json: not a JSON template cache .*folder or a \.json file"):
        GNNFFTemplateGenerator(cache=db)


def _registered(generator: GNNFFTemplateGenerator) -> app.ForceField:
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(generator.generator)
    return forcefield


@pytest.mark.slow
def test_two_processes_share_one_json_cache(SystemGenerator, tmp_path):
    """Two SystemGenerators in two processes write one db.json at once: no template lost."""
    script = textwrap.dedent("""
        import sys
        import gnnff.openmm
        from openff.toolkit import Molecule
        from openmmforcefields.generators import SystemGenerator
        molecules = [Molecule.from_smiles(s) for s in sys.argv[2:]]
        generator = SystemGenerator(small_molecule_forcefield="gnnff-industry-v0", cache=sys.argv[1])
        for molecule in molecules:
            system = generator.create_system(molecule.to_topology().to_openmm(), molecules=[molecule])
            print(system.getNumParticles())
    """)
    db = tmp_path / "db.json"
    args = [["CCO", "CC(=O)[O-]", "c1ccccc1"], ["c1ccccc1", "CC(=O)[O-]", "CCN"]]
    runs = [subprocess.Popen([sys.executable, "-c", script, str(db), *smiles], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for smiles in args]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [out.split() for out, _ in outputs] == [["9", "7", "12"], ["12", "7", "10"]]
    table = json.loads(db.read_text())["gnnff"]
    assert sorted(entry["smiles"] for entry in table.values()) == sorted(
        gnnff.openmm.molecule_key(gnnff.load_molecule(s)) for s in ["CCO", "CC(=O)[O-]", "c1ccccc1", "CCN"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["db.json"]


def test_unrecognised_residue_goes_to_the_next_generator(small_molecules):
    """gnnff returns False for a molecule it lacks (or has in another protonation
    state, with a warning), and the generator registered after it builds the template."""
    acetic_acid = _offmol("CC(=O)O", charges=[-0.2, 0.6, -0.5, -0.5, 0.1, 0.1, 0.1, 0.3])
    lacking = GNNFFTemplateGenerator(molecules=[small_molecules["aspirin"], "CC(=O)[O-]"])
    gaff = generators.GAFFTemplateGenerator(molecules=acetic_acid, forcefield="gaff-2.11")  # antechamber, ~2 s
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(lacking.generator)
    forcefield.registerTemplateGenerator(gaff.generator)
    with pytest.warns(UserWarning, match=r"same heavy atoms but 3 hydrogens instead of 4"):
        system = _build(forcefield, acetic_acid)
    np.testing.assert_allclose(_particle_charges(system), acetic_acid.partial_charges.m, atol=1e-12)
    assert lacking.get_openmm_system(acetic_acid) is None
    # and a second gnnff generator after the first
    second = GNNFFTemplateGenerator(molecules=acetic_acid, user_charges=False)
    forcefield = app.ForceField()
    for generator in (lacking, second):
        forcefield.registerTemplateGenerator(generator.generator)
    with pytest.warns(UserWarning, match="hydrogens instead of"):
        system = _build(forcefield, acetic_acid)
    x = acetic_acid.conformers[0].m_as("nanometer")
    _assert_same(energies_by_force(gnnff.parametrize(acetic_acid), x), energies_by_force(system, x), "second")


def _split_into_residues(mol: Chem.Mol, cut: str, names: list[str]) -> tuple[Chem.Mol, app.Topology]:
    """``mol`` renumbered residue by residue and its topology as one chain of residues:
    the pieces left when the bonds between the first two atoms of SMARTS ``cut`` are cut,
    in the order of their first atoms, named ``names``; every bond kept."""
    matches = mol.GetSubstructMatches(Chem.MolFromSmarts(cut))
    cut_bonds = [mol.GetBondBetweenAtoms(match[0], match[1]).GetIdx() for match in matches]
    pieces = sorted(Chem.GetMolFrags(Chem.FragmentOnBonds(mol, cut_bonds, addDummies=False)))
    assert len(pieces) == len(names)
    mol = Chem.RenumberAtoms(mol, [i for piece in pieces for i in piece])  # residues' atoms contiguous
    single = to_openmm_topology(mol)
    topology = app.Topology()
    chain = topology.addChain()
    atoms = []
    for name, piece in zip(names, pieces):
        residue = topology.addResidue(name, chain)
        atoms += [topology.addAtom(f"{a.GetSymbol()}{len(atoms)}", Element.getByAtomicNumber(a.GetAtomicNum()),
                                   residue) for a in list(mol.GetAtoms())[len(atoms):len(atoms) + len(piece)]]
    for a, b in single.bonds():
        topology.addBond(atoms[a.index], atoms[b.index])
    return mol, topology


@pytest.mark.parametrize("smiles, cut, names", [
    ("CC(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)NC", "[NX3]-C=O", ["ACE", "ALA", "ALA", "ALA", "NME"]),
    ("CC(=O)Oc1ccccc1C(=O)O", "[$(Oc)]-C(=O)C", ["AC1", "SAL"]),  # a ligand split over two residues
])
def test_molecule_over_several_residues_is_one_template(smiles, cut, names):
    mol, topology = _split_into_residues(gnnff.load_molecule(embedded(smiles)), cut, names)
    assert topology.getNumResidues() == len(names) and topology.getNumAtoms() == mol.GetNumAtoms()
    generator = GNNFFTemplateGenerator(molecules=smiles)
    forcefield = _registered(generator)
    system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None)
    x = positions_nm(mol)[0]
    _assert_same(energies_by_force(gnnff.parametrize(mol), x), energies_by_force(system, x), "+".join(names))
    assert len(generator._ffxml) == 1  # one template for the whole molecule


def test_user_charges_are_used_and_checked(tmp_path):
    charges = [-0.18, 0.15, -0.6, 0.06, 0.06, 0.06, 0.03, 0.03, 0.39]
    ethanol = _offmol("CCO", charges)
    generator = GNNFFTemplateGenerator(molecules=ethanol, cache=tmp_path / "cache")
    generator.debug_ffxml_filename = tmp_path / "debug.xml"
    system = _build(_registered(generator), ethanol)
    np.testing.assert_allclose(_particle_charges(system), charges, atol=1e-12)
    assert 'charge="0.39"' in (tmp_path / "debug.xml").read_text()
    # the model's charges: another template, not the cached one with user charges
    plain = GNNFFTemplateGenerator(molecules=ethanol, cache=tmp_path / "cache", user_charges=False)
    model_charges = _particle_charges(_build(_registered(plain), ethanol))
    np.testing.assert_allclose(model_charges, gnnff.assign_parameters(ethanol).parameters.nonbonded.charge.numpy(),
                               atol=1e-12)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    unbalanced = _offmol("CCO", [c + 0.01 for c in charges])
    # worded as openmmforcefields' own generators word it (their tests match on this start)
    with pytest.warns(UserWarning, match=r"^Sum of user-provided partial charges 0\.0[89]\d* does not match formal "
                                         r"charge 0\.0 \(.*used as given"):
        GNNFFTemplateGenerator(molecules=unbalanced)
    zero = _offmol("CCO", [0.0] * 9)  # all zero: "no user charges", as in openmmforcefields
    np.testing.assert_allclose(_particle_charges(_build(_registered(GNNFFTemplateGenerator(molecules=zero)), zero)),
                               model_charges, atol=1e-12)
    generator.add_molecules()  # nothing to add


def test_works_without_openmmforcefields(tmp_path):
    """With openmmforcefields absent (its import fails) the generator is a plain class
    and still parametrizes through ForceField, with either cache."""
    script = textwrap.dedent("""
        import sys
        sys.modules["openmmforcefields"] = None  # import openmmforcefields now raises ImportError
        from openmm import app
        import gnnff
        from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology
        assert GNNFFTemplateGenerator.__bases__ == (object,), GNNFFTemplateGenerator.__bases__
        mol = gnnff.load_molecule("CC(=O)[O-]")
        for cache in sys.argv[1:]:
            generator = GNNFFTemplateGenerator(molecules=mol, cache=cache)
            forcefield = app.ForceField()
            forcefield.registerTemplateGenerator(generator.generator)
            print(forcefield.createSystem(to_openmm_topology(mol)).getNumParticles())
    """)
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "folder"), str(tmp_path / "db.json")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["7", "7"]


def test_system_generator_with_a_gnnff_name_prints_nothing(tmp_path):
    """SystemGenerator tries openmmforcefields' SMIRNOFF generator first, which logs that it
    cannot read 'gnnff-v1' as an offxml; gnnff drops that one message, and only that one."""
    code = textwrap.dedent("""
        import logging
        import gnnff.openmm
        from openmmforcefields.generators import SystemGenerator
        SystemGenerator(forcefields=["amber/protein.ff14SB.xml"], small_molecule_forcefield="gnnff-v1")
        logging.getLogger("openmmforcefields.generators.template_generators").error("Source 'other.offxml' x")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr.strip() == "Source 'other.offxml' x", result.stderr


@pytest.mark.parametrize("charge_method, expected", [("nn", "model"), ("from-molecule", "user"),
                                                     ("am1-bcc", "am1bcc")])
def test_peer_charge_method_keys_map_to_gnnff_charges(charge_method, expected):
    """template_generator_kwargs={"charge_method": ...} as users of the espaloma generator pass it."""
    from gnnff.sources.charges import assign_charges

    user = [-0.2, 0.9, -0.85, -0.85, 0.0, 0.0, 0.0]
    acetate = _offmol("CC(=O)[O-]", user)
    generator = generators.SystemGenerator(forcefields=["amber/protein.ff14SB.xml"], molecules=[acetate],
                                           small_molecule_forcefield="gnnff-v1",
                                           template_generator_kwargs={"charge_method": charge_method})
    charges = _particle_charges(generator.create_system(acetate.to_topology().to_openmm()))
    mol = gnnff.load_molecule(acetate)
    reference = {"model": gnnff.assign_parameters(mol).parameters.nonbonded.charge.numpy(), "user": np.array(user),
                 "am1bcc": assign_charges(mol, "am1bcc") if expected == "am1bcc" else None}[expected]
    np.testing.assert_allclose(charges, reference, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"charge_method": "gasteiger"}, r"charge_method 'gasteiger' is not one gnnff can give; use one of am1-bcc, "),
    ({"reference_forcefield": "openff-2.2.0"}, r"\['reference_forcefield'\]: model 'gnnff-v1' takes no options; "
                                               r"gnnff accepts charge_method"),
])
def test_peer_keys_gnnff_cannot_honour_are_one_line_errors(kwargs, message):
    with pytest.raises(gnnff.InputError, match=message):
        GNNFFTemplateGenerator(forcefield="gnnff-v1", template_generator_kwargs=kwargs)
