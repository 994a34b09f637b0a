"""The gnnff command line, run in a subprocess as users run it."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm
import pytest
from rdkit import Chem

import gnnff
from gnnff.chem.molecule import positions_nm, read_records
from gnnff.testing import openmm_terms

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parents[1] / "examples"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gnnff", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _energy(system: openmm.System, x: np.ndarray) -> float:
    return sum(e for e, _ in openmm_terms(system, x).values())


def _assert_same_energy(xml_path: Path, mol: Chem.Mol) -> None:
    loaded = openmm.XmlSerializer.deserialize(xml_path.read_text())
    direct = gnnff.parametrize(mol, model="sage", charges="mmff94")
    mol = mol if mol.GetNumConformers() else gnnff.chem.molecule.with_conformer(mol)
    x = positions_nm(mol)[0]
    assert loaded.getNumParticles() == mol.GetNumAtoms()
    assert abs(_energy(loaded, x) - _energy(direct, x)) < 1e-8 * max(1.0, abs(_energy(direct, x)))


def test_sdf(tmp_path):
    result = run("parametrize", str(EXAMPLES / "aspirin.sdf"), "-o", "out/aspirin.xml",
                 "--model", "sage", "--charges", "mmff94", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote out/aspirin.xml" in result.stdout and "parametrized 1 of 1" in result.stdout
    (record,) = read_records(EXAMPLES / "aspirin.sdf")
    _assert_same_energy(tmp_path / "out" / "aspirin.xml", record.mol)


def test_mol2_several_records_go_to_a_folder(tmp_path):
    result = run("parametrize", str(DATA / "ethanol_acetate.mol2"), "--model", "sage", "--charges", "mmff94", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "ethanol_acetate").iterdir())
    assert written == [".acetate.xml.gnnff.json", ".ethanol.xml.gnnff.json",  # provenance, for resume
                       "acetate.xml", "ethanol.xml", "report.csv", "report.json"]  # named after the records
    for record in read_records(DATA / "ethanol_acetate.mol2"):
        _assert_same_energy(tmp_path / "ethanol_acetate" / f"{record.title}.xml", record.mol)


def test_files_named_from_xml_pattern(tmp_path):
    result = run("parametrize", str(DATA / "ethanol_acetate.mol2"), "-o", "lig.xml", "--model", "sage", "--charges", "mmff94",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.xml")) == ["lig-acetate.xml", "lig-ethanol.xml"]


def test_smiles_string(tmp_path):
    result = run("parametrize", "[NH3+]CC(=O)[O-]", "-o", "gly.xml", "--model", "sage", "--charges", "mmff94", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "net charge +0" in result.stdout
    _assert_same_energy(tmp_path / "gly.xml", gnnff.load_molecule("[NH3+]CC(=O)[O-]"))


def test_smiles_file_continues_past_bad_record(tmp_path):
    (tmp_path / "in.smi").write_text("CCO ethanol\nC1CC broken\n[Na+] sodium\n")
    result = run("parametrize", "in.smi", "--model", "sage", "--charges", "mmff94", cwd=tmp_path)
    assert result.returncode == 1
    assert sorted(p.name for p in (tmp_path / "in").glob("*.xml")) == ["ethanol.xml", "sodium.xml"]
    report = list(csv.DictReader((tmp_path / "in" / "report.csv").open()))
    assert [(r["record"], r["name"], r["status"]) for r in report] == [
        ("1", "ethanol", "ok"), ("2", "broken", "failed"), ("3", "sodium", "ok")]
    errors = [line for line in result.stderr.splitlines() if line.startswith("gnnff: error:")]
    assert errors == ["gnnff: error: in.smi record 2 ('broken'): RDKit cannot parse SMILES 'C1CC'; "
                      "check its syntax (brackets, ring-closure digits, element symbols)"]
    assert "parametrized 2 of 3" in result.stdout and "1 failed" in result.stdout


def test_models_command(tmp_path):
    result = run("models", cwd=tmp_path)
    assert result.returncode == 0 and "gnnff-v1  (default)" in result.stdout and "sage" in result.stdout


BAD_INPUTS = {
    "empty": ("empty.sdf", b"", r"empty\.sdf: file is empty", 2),
    "binary": ("junk.sdf", bytes(range(256)), r"junk\.sdf: binary data", 2),
    "unsupported": ("mol.xyz", b"1\n\nC 0 0 0\n", r"unsupported format '\.xyz'", 2),
    "missing": ("absent.sdf", None, r"absent\.sdf: no such file", 2),
    "radical": ("radical.smi", b"[CH3] methyl\n", r"record 1 \('methyl'\): atom 0 \(C\) has 1 unpaired", 1),
    "element": ("silane.smi", b"[SiH4] silane\n", r"atom 0 \(Si\) is an element Sage does not cover", 1),
    "bad smiles": ("bad.smi", b"C1CC x\n", r"bad\.smi record 1 \('x'\): RDKit cannot parse SMILES 'C1CC'; check", 1),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_error_and_no_output(tmp_path, case):
    name, content, pattern, code = BAD_INPUTS[case]
    if content is not None:
        (tmp_path / name).write_bytes(content)
    result = run("parametrize", name, "-o", "out.xml", "--model", "sage", "--charges", "mmff94", cwd=tmp_path)
    assert result.returncode == code
    errors = [line for line in result.stderr.splitlines() if line.startswith("gnnff: error:")]
    assert len(errors) == 1, result.stderr
    import re

    assert re.search(pattern, errors[0]), errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if content is not None else [])


def test_missing_hydrogens_in_3d_sdf(tmp_path):
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    from rdkit.Chem import AllChem

    AllChem.EmbedMolecule(mol, randomSeed=1)
    Chem.MolToMolFile(Chem.RemoveHs(mol), str(tmp_path / "noh.sdf"))
    result = run("parametrize", "noh.sdf", cwd=tmp_path)
    assert result.returncode == 1
    assert "noh.sdf record 1" in result.stderr and "must list every hydrogen" in result.stderr
    assert not list(tmp_path.glob("*.xml"))


def test_unwritable_output(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    result = run("parametrize", "CCO", "-o", "blocker/x.xml", "--model", "sage", "--charges", "mmff94", cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot write blocker/x.xml" in result.stderr


def test_console_script_installed():
    exe = shutil.which("gnnff")
    if exe is None:
        pytest.skip("gnnff console script not on PATH (package not installed)")
    result = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("gnnff ")


def test_readme_quickstart_uses_the_shipped_default_model(tmp_path):
    result = run("parametrize", str(EXAMPLES / "aspirin.sdf"), "-o", "aspirin.xml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model gnnff-v1" in result.stdout
    system = openmm.XmlSerializer.deserialize((tmp_path / "aspirin.xml").read_text())
    assert system.getNumParticles() == 21


def test_charges_option_needs_the_classical_model(tmp_path):
    result = run("parametrize", "CCO", "--charges", "mmff94", cwd=tmp_path)
    assert result.returncode == 2 and "--charges applies to the classical models: add --model sage or --model sage-2.3" in result.stderr
