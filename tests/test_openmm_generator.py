"""gnnff inside openmm.app: ffxml templates and the template generator.

The ligand's terms inside a protein-ligand System built by ``ForceField`` + the
generator must equal those of the ligand parametrized alone, whatever the atom order
and atom names in the PDB.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit
from rdkit import Chem

import gnnff
from gnnff.chem.molecule import positions_nm
from gnnff.openmm import GNNFFTemplateGenerator, ffxml, to_openmm_topology
from gnnff.testing import energies_by_force, subsystem

ROOT = Path(__file__).resolve().parents[1]
COMPLEX = ROOT / "examples" / "protein-ligand"
RTOL = 1e-9
#: Across atom orders a checkpoint's float32 network rounds differently (sums in another
#: order): parameters, and so energies and forces, agree to float32 rounding, not float64.
#: Forces are compared relative to the largest of their force group: one torsion force
#: component of a strained ligand reached 3.7e4 kJ/mol/nm and differed by 0.015 (4e-7).
PERMUTED_RTOL, PERMUTED_FORCE_ATOL = 1e-6, 1e-2  # kJ/mol/nm


def _assert_same(a: dict, b: dict, what: str, rtol: float = RTOL, force_atol: float = 1e-6) -> None:
    assert a.keys() == b.keys(), f"{what}: forces {sorted(a)} vs {sorted(b)}"
    for name, (ea, fa) in a.items():
        eb, fb = b[name]
        assert abs(ea - eb) <= rtol * max(abs(ea), 1.0), f"{what}: {name} {ea!r} vs {eb!r}"
        scale = float(np.abs(fa).max(initial=0.0))
        np.testing.assert_allclose(fa, fb, atol=force_atol + rtol * scale, rtol=0, err_msg=f"{what}: {name} forces")


@pytest.mark.parametrize("name", ["aspirin", "acetate", "glycine_zwitterion", "cyclopropane", "phosphate",
                                  "nitrobenzene"])
def test_ffxml_template_reproduces_system(small_molecules, name):
    result = gnnff.assign_parameters(small_molecules[name])
    forcefield = app.ForceField(io.StringIO(ffxml(result)))
    system = forcefield.createSystem(to_openmm_topology(result.mol), nonbondedMethod=app.NoCutoff,
                                     constraints=None, rigidWater=False)
    x = positions_nm(result.mol)[0]
    _assert_same(energies_by_force(result.to_openmm(), x), energies_by_force(system, x), name)


def test_sage_general_phases_survive_ffxml():
    """Sage torsions merged into one cosine with a general phase (see schema) go through ffxml."""
    result = gnnff.assign_parameters("CC(=O)Nc1ccccc1", model="sage", charges="mmff94")
    system = app.ForceField(io.StringIO(ffxml(result))).createSystem(
        to_openmm_topology(result.mol), nonbondedMethod=app.NoCutoff, constraints=None)
    from gnnff.chem.molecule import with_conformer

    x = positions_nm(with_conformer(result.mol))[0]
    _assert_same(energies_by_force(result.to_openmm(), x), energies_by_force(system, x), "acetanilide")


@pytest.fixture(scope="module")
def ligand() -> Chem.Mol:
    return gnnff.load_molecule(COMPLEX / "tyk2_ligand_jmc30.sdf")


@pytest.fixture(scope="module")
def protein() -> app.PDBFile:
    return app.PDBFile(str(COMPLEX / "tyk2_protein.pdb"))


def _complex(protein, ligand_mol, generator, **options):
    modeller = app.Modeller(protein.topology, protein.positions)
    modeller.add(to_openmm_topology(ligand_mol), positions_nm(ligand_mol)[0] * unit.nanometer)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(generator.generator)
    options = {"nonbondedMethod": app.NoCutoff, "constraints": None, "rigidWater": False, **options}
    return modeller, forcefield.createSystem(modeller.topology, **options)


def _ligand_atoms(topology: app.Topology) -> list[int]:
    return [a.index for a in topology.atoms() if a.residue.name == "LIG"]


def test_ligand_in_complex_equals_ligand_alone(protein, ligand):
    generator = GNNFFTemplateGenerator(molecules=ligand)
    modeller, system = _complex(protein, ligand, generator)
    atoms = _ligand_atoms(modeller.topology)
    assert len(atoms) == ligand.GetNumAtoms() and system.getNumParticles() == protein.topology.getNumAtoms() + len(atoms)
    x = np.asarray(modeller.positions.value_in_unit(unit.nanometer))[atoms]
    alone = gnnff.assign_parameters(ligand)
    _assert_same(energies_by_force(alone.to_openmm(), x), energies_by_force(subsystem(system, atoms), x),
                 "ligand in Tyk2 vs alone")
    # The ligand's LJ and charges sit in the same NonbondedForce as ff14SB's, declared with
    # the Amber 1-4 scales, so they combine by Lorentz-Berthelot with protein and water.
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    p = alone.parameters.nonbonded
    for n, a in enumerate(atoms):
        q, sigma, eps = (v._value for v in nonbonded.getParticleParameters(a))
        assert (q, sigma, eps) == pytest.approx((float(p.charge[n]), float(p.sigma[n]), float(p.epsilon[n])), rel=1e-12)


def test_ligand_protein_interaction_is_lorentz_berthelot(protein, ligand):
    """OpenMM's ligand-protein nonbonded energy equals Coulomb + LJ with LB combining
    computed here from the per-particle parameters."""
    modeller, system = _complex(protein, ligand, GNNFFTemplateGenerator(molecules=ligand))
    atoms = np.array(_ligand_atoms(modeller.topology))
    rest = np.setdiff1d(np.arange(system.getNumParticles()), atoms)
    x = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    params = np.array([[v._value for v in nonbonded.getParticleParameters(i)] for i in range(system.getNumParticles())])
    q, s, e = params.T
    r = np.linalg.norm(x[atoms, None] - x[None, rest], axis=-1)
    sig = 0.5 * (s[atoms, None] + s[None, rest])
    eps = np.sqrt(e[atoms, None] * e[None, rest])
    expected = np.sum(138.935456 * q[atoms, None] * q[None, rest] / r + 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6))

    def nb_energy(keep: np.ndarray) -> float:
        clone = openmm.XmlSerializer.clone(system)
        force = next(f for f in clone.getForces() if isinstance(f, openmm.NonbondedForce))
        dropped = set(np.setdiff1d(np.arange(clone.getNumParticles()), keep).tolist())
        for i in dropped:
            force.setParticleParameters(i, 0.0, 1.0, 0.0)
        for n in range(force.getNumExceptions()):
            i, j, *_ = force.getExceptionParameters(n)
            if i in dropped or j in dropped:
                force.setExceptionParameters(n, i, j, 0.0, 1.0, 0.0)
        return energies_by_force(clone, x)["NonbondedForce"][0]

    interaction = nb_energy(np.arange(system.getNumParticles())) - nb_energy(atoms) - nb_energy(rest)
    assert interaction == pytest.approx(expected, rel=1e-6, abs=1e-3)


def test_generator_matches_any_atom_order_and_names(protein, ligand):
    rng = np.random.default_rng(3)
    order = [int(i) for i in rng.permutation(ligand.GetNumAtoms())]
    shuffled = Chem.RenumberAtoms(ligand, order)
    topology = to_openmm_topology(shuffled)
    for n, atom in enumerate(topology.atoms()):
        atom.name = f"X{n}"  # names unrelated to the registered molecule's
    modeller = app.Modeller(protein.topology, protein.positions)
    modeller.add(topology, positions_nm(shuffled)[0] * unit.nanometer)
    forcefield = app.ForceField("amber14-all.xml")
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(molecules=ligand).generator)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    atoms = _ligand_atoms(modeller.topology)
    x = np.asarray(modeller.positions.value_in_unit(unit.nanometer))[atoms]
    alone = gnnff.assign_parameters(shuffled)
    _assert_same(energies_by_force(alone.to_openmm(), x), energies_by_force(subsystem(system, atoms), x),
                 "shuffled ligand", rtol=PERMUTED_RTOL, force_atol=PERMUTED_FORCE_ATOL)


def test_solvated_ligand_with_pme_constraints_and_rigid_water(small_molecules):
    mol = small_molecules["acetate"]
    forcefield = app.ForceField("amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(molecules=[mol]).generator)
    modeller = app.Modeller(to_openmm_topology(gnnff.load_molecule(mol)), positions_nm(mol)[0] * unit.nanometer)
    modeller.addSolvent(forcefield, model="tip3p", padding=0.8 * unit.nanometer, neutralize=True)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                     nonbondedCutoff=0.8 * unit.nanometer, constraints=app.HBonds, rigidWater=True)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.PME
    n_water = sum(1 for r in modeller.topology.residues() if r.name == "HOH")
    ligand_h_bonds = 3  # methyl C-H of acetate
    assert system.getNumConstraints() == 3 * n_water + ligand_h_bonds
    total = sum(nonbonded.getParticleParameters(i)[0]._value for i in range(system.getNumParticles()))
    assert abs(total) < 1e-9  # acetate's -1 neutralised by one Na+


def test_molecules_added_later_and_unmatched_residues(protein, ligand):
    generator = GNNFFTemplateGenerator()
    assert generator.molecules == []
    with pytest.raises(ValueError, match="No template found for residue .*LIG"):
        _complex(protein, ligand, generator)  # nothing registered: OpenMM names the residue
    generator.add_molecules(COMPLEX / "tyk2_ligand_jmc30.sdf")
    generator.add_molecules(ligand)  # the same molecule again is not added twice
    assert len(generator.molecules) == 1
    _complex(protein, ligand, generator)


def test_missing_hydrogens_or_bonds_are_named_and_left_to_other_generators(ligand):
    """A near miss is not this generator's molecule: it returns False (so a generator
    registered after it can try) and warns with the hint; OpenMM's error names the residue."""
    heavy = Chem.RemoveHs(ligand)
    topology = to_openmm_topology(heavy)
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(molecules=ligand).generator)
    with pytest.warns(UserWarning, match=r"residue LIG 1 .*12 hydrogens instead of 0"), \
            pytest.raises(ValueError, match="No template found for residue 0 .LIG"):
        forcefield.createSystem(topology)
    no_bonds = to_openmm_topology(ligand)
    stripped = app.Topology()
    residue = stripped.addResidue("LIG", stripped.addChain())
    for atom in no_bonds.atoms():
        stripped.addAtom(atom.name, atom.element, residue)
    with pytest.warns(UserWarning, match="different bonds .*CONECT"), pytest.raises(ValueError, match="No template"):
        forcefield.createSystem(stripped)


def test_on_disk_cache_is_used_and_shared(tmp_path, small_molecules, monkeypatch):
    mol = small_molecules["aspirin"]
    topology = to_openmm_topology(gnnff.load_molecule(mol))
    first = GNNFFTemplateGenerator(molecules=mol, cache=tmp_path / "cache")
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(first.generator)
    reference = forcefield.createSystem(topology)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".xml"

    import gnnff.openmm.generator as module

    def fail(*args, **kwargs):
        raise AssertionError("parametrized again despite the cache")

    monkeypatch.setattr(module, "assign_parameters", fail)
    second = GNNFFTemplateGenerator(molecules=mol, cache=tmp_path / "cache")
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(second.generator)
    cached = forcefield.createSystem(topology)
    x = positions_nm(mol)[0]
    _assert_same(energies_by_force(reference, x), energies_by_force(cached, x), "cached template")
    # a different model is a different key
    third = GNNFFTemplateGenerator(molecules=mol, cache=tmp_path / "cache", model="sage", charges="mmff94")
    monkeypatch.undo()
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(third.generator)
    forcefield.createSystem(topology)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_cache_folder_made_by_another_process_between_the_checks(tmp_path, monkeypatch):
    """Two processes opening one new cache folder: the other made it after this one found no
    folder there (CI saw the path then opened as a JSON file: IsADirectoryError)."""
    from gnnff.openmm.cache import open_cache

    folder = tmp_path / "c"
    real_is_dir, looks = Path.is_dir, []

    def made_meanwhile(self):
        answer = real_is_dir(self)
        if self == folder and not looks:  # the first look: the other process makes it just after
            looks.append(answer)
            folder.mkdir()
        return answer

    monkeypatch.setattr(Path, "is_dir", made_meanwhile)
    store = open_cache(folder)
    monkeypatch.undo()
    store.put("abc", "CCO", "<ForceField/>")
    assert [f.name for f in folder.iterdir()] == ["abc.xml"]


def test_cache_under_two_processes(tmp_path):
    script = (
        "import sys; from openmm import app; from gnnff.openmm import GNNFFTemplateGenerator, to_openmm_topology;"
        "import gnnff; mol = gnnff.load_molecule('CC(=O)Nc1ccc(O)cc1');"
        "g = GNNFFTemplateGenerator(molecules=mol, cache=sys.argv[1]); ff = app.ForceField();"
        "ff.registerTemplateGenerator(g.generator); s = ff.createSystem(to_openmm_topology(mol)); print(s.getNumParticles())"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == ["20", "20"]
    files = list((tmp_path / "c").iterdir())
    assert [f.suffix for f in files] == [".xml"]  # one template, no temporary files left
    app.ForceField(str(files[0]))  # and it is a complete ffxml file


def test_two_ligands_and_two_copies_in_one_topology(small_molecules):
    aspirin, acetate = (gnnff.load_molecule(small_molecules[n]) for n in ("aspirin", "acetate"))
    modeller = app.Modeller(to_openmm_topology(aspirin), positions_nm(aspirin)[0] * unit.nanometer)
    for mol, shift in ((acetate, 2.0), (aspirin, 4.0)):
        modeller.add(to_openmm_topology(mol), (positions_nm(mol)[0] + shift) * unit.nanometer)
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(GNNFFTemplateGenerator(molecules=[acetate, aspirin]).generator)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    x = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    start = 0
    for mol in (aspirin, acetate, aspirin):
        atoms = list(range(start, start + mol.GetNumAtoms()))
        start += mol.GetNumAtoms()
        _assert_same(energies_by_force(gnnff.parametrize(mol), x[atoms]),
                     energies_by_force(subsystem(system, atoms), x[atoms]), mol.GetProp("_Name") or "ligand")


def test_salt_components_are_registered_as_separate_residues():
    salt = gnnff.load_molecule("C[NH3+].[Cl-]")
    generator = GNNFFTemplateGenerator(molecules=salt, model="sage", charges="mmff94")
    assert sorted(m.GetNumAtoms() for m in generator.molecules) == [1, 8]
    from gnnff.chem.molecule import components, with_conformer

    mol = with_conformer(salt)
    modeller = app.Modeller(app.Topology(), [])
    for _, part in components(mol):
        modeller.add(to_openmm_topology(part, residue_name="ION" if part.GetNumAtoms() == 1 else "MAM"),
                     positions_nm(part)[0] * unit.nanometer)
    forcefield = app.ForceField()
    forcefield.registerTemplateGenerator(generator.generator)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = [nonbonded.getParticleParameters(i)[0]._value for i in range(system.getNumParticles())]
    assert sum(charges[:8]) == pytest.approx(1.0, abs=1e-9) and charges[8] == pytest.approx(-1.0, abs=1e-9)
