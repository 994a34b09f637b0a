"""Every output format round-trips: the System OpenMM builds from the written files has
the energy and forces of the original, term by term."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit

import gnnff
from gnnff.app.formats import FORMATS, format_from_path, output_files, write_parametrized
from gnnff.chem.molecule import positions_nm
from gnnff.openmm import to_openmm_topology
from gnnff.testing import energies_by_force


def _read_back(fmt: str, files, result) -> tuple[openmm.System, np.ndarray | None]:
    """System (and coordinates in nm, for formats that store them) read by OpenMM."""
    main = str(files[0])
    if fmt == "xml":
        return openmm.XmlSerializer.deserialize(files[0].read_text()), None
    if fmt == "ffxml":
        return app.ForceField(main).createSystem(to_openmm_topology(result.mol), nonbondedMethod=app.NoCutoff,
                                                 constraints=None), None
    if fmt == "amber":
        system = app.AmberPrmtopFile(main).createSystem(nonbondedMethod=app.NoCutoff, constraints=None)
        return system, app.AmberInpcrdFile(str(files[1])).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    system = app.GromacsTopFile(main).createSystem(nonbondedMethod=app.NoCutoff, constraints=None)
    return system, app.GromacsGroFile(str(files[1])).getPositions(asNumpy=True).value_in_unit(unit.nanometer)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ["aspirin", "glycine_zwitterion", "phosphate", "cyclopropane"])
def test_format_round_trip(tmp_path, small_molecules, fmt, name):
    result = gnnff.assign_parameters(small_molecules[name])
    files = write_parametrized(result, tmp_path / f"{name}{FORMATS[fmt][0]}", fmt)
    assert files == output_files(tmp_path / f"{name}{FORMATS[fmt][0]}", fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)  # no temporaries
    system, stored = _read_back(fmt, files, result)
    x = positions_nm(result.mol)[0]
    original, reread = energies_by_force(result.to_openmm(), x), energies_by_force(system, x)
    assert set(reread) == {"HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce"}
    # float64 in XML; Amber and GROMACS store ~8 significant digits
    rtol, force_atol = (1e-12, 1e-7) if fmt in ("xml", "ffxml") else (1e-6, 1e-2)
    for force, (energy, forces) in original.items():
        assert reread[force][0] == pytest.approx(energy, rel=rtol, abs=rtol), f"{fmt} {name} {force}"
        np.testing.assert_allclose(reread[force][1], forces, atol=force_atol * max(1.0, np.abs(forces).max()),
                                   err_msg=f"{fmt} {name} {force}")
    if stored is not None:
        np.testing.assert_allclose(stored, x, atol=6e-4)  # .gro keeps 0.001 nm, .inpcrd 1e-8 nm
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    total = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                for i in range(system.getNumParticles()))
    assert total == pytest.approx(result.topology.net_charge, abs=1e-6)


def test_sage_parameters_round_trip_through_amber_and_gromacs(tmp_path):
    """Sage has zero-k torsions and general phases; 1-4 pairs must survive (Amber keeps them via dihedrals)."""
    result = gnnff.assign_parameters("CC(=O)Nc1ccc(O)cc1", model="sage", charges="mmff94")
    from gnnff.chem.molecule import with_conformer

    x = positions_nm(with_conformer(result.mol))[0]
    original = energies_by_force(result.to_openmm(), x)
    for fmt in ("amber", "gromacs"):
        files = write_parametrized(result, tmp_path / f"apap{FORMATS[fmt][0]}", fmt)
        reread = energies_by_force(_read_back(fmt, files, result)[0], x)
        for force, (energy, _) in original.items():
            assert reread[force][0] == pytest.approx(energy, rel=1e-6, abs=1e-6), f"{fmt} {force}"


def test_format_from_path_and_unknown_format(tmp_path):
    assert format_from_path("x.prmtop") == "amber"
    assert format_from_path("x.TOP") == "gromacs"
    assert format_from_path("x.ffxml") == "ffxml"
    assert format_from_path("x.xml") is None
    with pytest.raises(gnnff.InputError, match="unknown output format 'psf'; known formats: xml, ffxml, amber, gromacs"):
        output_files(tmp_path / "x.psf", "psf")


def test_two_file_formats_write_both_or_neither(tmp_path, small_molecules, monkeypatch):
    import parmed

    result = gnnff.assign_parameters(small_molecules["ethanol"])
    original = parmed.Structure.save

    def save(self, path, format=None, **kwargs):
        if format == "amber":  # the main file, written after the coordinates
            raise OSError(28, "No space left on device")
        return original(self, path, format=format, **kwargs)

    monkeypatch.setattr(parmed.Structure, "save", save)
    with pytest.raises(OSError):
        write_parametrized(result, tmp_path / "ethanol.prmtop", "amber")
    assert list(tmp_path.iterdir()) == []


def test_cli_formats_from_option_and_suffix(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def gnnff_cli(*args):
        return subprocess.run([sys.executable, "-m", "gnnff", "parametrize", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=False, timeout=300)

    run = gnnff_cli(str(root / "examples" / "molecules.smi"), "-o", "gmx/", "--format", "gromacs", "-q")
    assert run.returncode == 0, run.stderr
    tops = sorted(p.stem for p in (tmp_path / "gmx").glob("*.top"))
    assert tops and tops == sorted(p.stem for p in (tmp_path / "gmx").glob("*.gro"))
    run = gnnff_cli(str(root / "examples" / "aspirin.sdf"), "-o", "asp.prmtop")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "asp.prmtop").is_file() and (tmp_path / "asp.inpcrd").is_file()
    run = gnnff_cli(str(root / "examples" / "aspirin.sdf"), "-o", "asp.ffxml")
    assert run.returncode == 0, run.stderr
    app.ForceField(str(tmp_path / "asp.ffxml"))
    run = gnnff_cli("CCO", "--format", "pdb")
    assert run.returncode == 2 and "invalid choice: 'pdb'" in run.stderr


@pytest.mark.parametrize("smiles", ["CC(=O)Oc1ccccc1C(=O)O", "C#CC(=O)[O-]", "O", "CC(C)(C)c1ccc(cc1)S(=O)(=O)N"])
@pytest.mark.parametrize("model", ["gnnff-industry-v0", "sage"])
def test_system_xml_is_the_serializers_text(smiles, model):
    """The XML written from parameter arrays is character for character what
    XmlSerializer writes for the built System (so it deserializes to the same System)."""
    from gnnff.mm.export import system_xml, to_xml

    result = gnnff.assign_parameters(smiles, model=model)
    text = system_xml(result.topology, result.parameters)
    assert text == to_xml(result.to_openmm())
    assert to_xml(openmm.XmlSerializer.deserialize(text)) == text


def test_system_xml_of_sparse_torsions_unusual_numbers_and_two_components():
    """Pruned cosines (exact zeros), huge/tiny/negative-zero values, and a record of two
    molecules (one topology, several components)."""
    from gnnff.mm.export import system_xml, to_openmm, to_xml

    result = gnnff.assign_parameters("CC(=O)[O-].C[NH3+]", model="sage")

    def edit(term, name, x):
        x = x.clone()
        if term.name == "propers" and name == "k":
            x[::2] = 0.0
            x[1, 1], x[3, 0] = 1e-7, 1.5e16
            x[1, 2], x[3, 1], x[3, 2] = 1e-4, -0.25, 100.0  # boundary of the exponent form, leading/trailing 0
        if term.name == "nonbonded" and name == "charge":
            x[0] = -0.0
        return x

    parameters = result.parameters.map(edit)
    assert int((parameters.propers.k == 0).sum()) > 0
    text = system_xml(result.topology, parameters)
    assert text == to_xml(to_openmm(result.topology, parameters))
    assert 'k="1e-07"' in text and 'k="1.5e+16"' in text
    assert 'k=".0001"' in text and 'k="-.25"' in text and 'k="100"' in text


def test_to_openmm_fast_path_builds_the_public_methods_system(monkeypatch):
    """to_openmm calls OpenMM's SWIG functions directly (no unit checks); the System equals
    the one built through the public add methods, which remain the fallback."""
    from gnnff.mm import export

    result = gnnff.assign_parameters("CC(=O)Oc1ccccc1C(=O)[O-].[Na+]", model="sage")
    fast = export.to_xml(export.to_openmm(result.topology, result.parameters))
    assert isinstance(export._adder(openmm.System(), "addParticle"), functools.partial)
    monkeypatch.setattr(export, "_adder", lambda force, method: getattr(force, method))
    assert export.to_xml(export.to_openmm(result.topology, result.parameters)) == fast
