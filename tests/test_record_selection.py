"""Picking one molecule of a multi-molecule file: ``FILE:N``, ``FILE:NAME``, ``--name`` and
``record=``, everywhere a single molecule is read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

import gnnff
from gnnff.app.cli import main
from gnnff.chem.molecule import count_records, looks_like_path, read_records, record_titles, split_selector
from gnnff.errors import InputError

DATA = Path(__file__).parent / "data"


SAGE = ("--model", "sage", "--charges", "mmff94")  # no AM1 run: fast


def _sdf(path: Path, named: list[tuple[str, str]]) -> Path:
    """An SDF of 3D records, (SMILES, title) each."""
    writer = Chem.SDWriter(str(path))
    for smiles, title in named:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        mol.SetProp("_Name", title)
        writer.write(mol)
    writer.close()
    return path


@pytest.fixture
def ligands(tmp_path) -> Path:
    return _sdf(tmp_path / "ligands.sdf", [("CCO", "lig_1"), ("CCN", "lig_2"), ("CC=O", "lig_3"), ("CCC", "lig_2"),
                                           ("CO", "")])


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "gnnff", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def _one_error(stderr: str) -> str:
    """The only line of stderr, which must be one ``gnnff: error:`` line; without the prefix."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gnnff: error: "), stderr
    return lines[0].removeprefix("gnnff: error: ")


def test_split_selector():
    assert split_selector("ligands.sdf:3") == ("ligands.sdf", 3)
    assert split_selector("dir/ligands.sdf.gz:lig_1") == ("dir/ligands.sdf.gz", "lig_1")
    assert split_selector("ligands.smi:a:b") == ("ligands.smi:a:b", None)  # 'ligands.smi:a' is no molecule file
    assert split_selector("C:\\data\\ligands.sdf") == ("C:\\data\\ligands.sdf", None)  # a Windows drive
    assert split_selector("[CH3:1][OH:2]") == ("[CH3:1][OH:2]", None)  # atom maps
    assert split_selector("ligands.sdf") == ("ligands.sdf", None)
    assert split_selector("ligands.sdf:") == ("ligands.sdf:", None)
    assert looks_like_path("ligands.sdf:3") and not looks_like_path("[CH3:1]O")


def test_pick_by_record_number(ligands):
    path = str(ligands)
    mol = gnnff.load_molecule(f"{path}:3")
    assert mol.GetProp("_Name") == "lig_3" and mol.GetNumAtoms() == 7
    assert Chem.MolToSmiles(gnnff.load_molecule(ligands, record=3)) == Chem.MolToSmiles(mol)
    (record,) = read_records(f"{path}:5")
    assert (record.index, record.label, record.title) == (5, "ligands.sdf record 5", "")
    assert count_records(f"{path}:2") == 1 and record_titles(f"{path}:4") == ["lig_2"]


def test_pick_by_name(ligands):
    assert gnnff.load_molecule(f"{ligands}:lig_3").GetNumAtoms() == 7
    assert gnnff.load_molecule(ligands, record="lig_1").GetNumAtoms() == 9
    (record,) = read_records(ligands, record="lig_3")
    assert record.label == "ligands.sdf record 3 ('lig_3')"


def test_out_of_range_number_lists_the_records(ligands):
    message = (f"{ligands}: no record 9, the file holds 5 (records: 1 'lig_1', 2 'lig_2', 3 'lig_3', 4 'lig_2', "
               "5 (no name)); give a record number from 1 to 5 or a record name")
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        gnnff.load_molecule(f"{ligands}:9")
    with pytest.raises(InputError, match=r": no record 0, the file holds 5 "):
        list(read_records(ligands, record=0))


def test_unknown_and_ambiguous_names(ligands):
    message = (f"{ligands}: no record named 'lig_4' (closest: 'lig_3', 'lig_2', 'lig_1'; records: 1 'lig_1', "
               "2 'lig_2', 3 'lig_3', 4 'lig_2', 5 (no name)); give a record name of the file or a record number "
               "from 1 to 5")
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        gnnff.load_molecule(ligands, record="lig_4")
    message = f"{ligands}: 2 records are named 'lig_2' (records 2, 4); pick one by record number, e.g. {ligands}:2"
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        gnnff.load_molecule(f"{ligands}:lig_2")


def test_long_files_list_the_first_records(tmp_path):
    path = tmp_path / "many.smi"
    path.write_text("".join(f"C{'C' * i} m{i}\n" for i in range(8)))
    with pytest.raises(InputError, match=r"\(records: 1 'm0', 2 'm1', 3 'm2', 4 'm3', 5 'm4', \.\.\. \(8 in all\)\)"):
        gnnff.load_molecule(path)


def test_several_molecules_refused_with_how_to_pick_one(ligands):
    message = (f"{ligands}: holds 5 molecules and one is needed (records: 1 'lig_1', 2 'lig_2', 3 'lig_3', "
               f"4 'lig_2', 5 (no name)); pick one as {ligands}:2 (record number) or {ligands}:lig_1 (name; "
               "--name lig_1 on the command line, record='lig_1' in Python); or take all of them: gnnff "
               "parametrize FILE -o FOLDER, gnnff.assign_parameters_many")
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        gnnff.load_molecule(ligands)
    with pytest.raises(InputError, match=r"holds 2 molecules and one is needed"):
        gnnff.parametrize(DATA / "ethanol_acetate.mol2", model="sage", charges="mmff94")


def test_a_file_name_with_a_colon_still_reads(tmp_path):
    path = _sdf(tmp_path / "run:1.sdf", [("CCO", "eth"), ("CCN", "amine")])
    assert gnnff.load_molecule(path, record=2).GetProp("_Name") == "amine"
    assert [r.title for r in read_records(str(path))] == ["eth", "amine"]  # the whole name: the file
    assert gnnff.load_molecule(f"{path}:eth").GetNumAtoms() == 9  # and a record of it
    single = _sdf(tmp_path / "a:b.sdf", [("CCO", "eth")])
    assert gnnff.load_molecule(str(single)).GetProp("_Name") == "eth"


def test_selection_conflicts_and_non_files(ligands):
    with pytest.raises(InputError, match=r"selects record 2, and record=/--name selects 'lig_1'; select the record "
                                         r"once$"):
        gnnff.load_molecule(f"{ligands}:2", record="lig_1")
    with pytest.raises(InputError, match=r"^SMILES 'CCO': record=2 selects a record of a molecule file, and this "
                                         r"input is not one; leave record out$"):
        gnnff.load_molecule("CCO", record=2)


def test_template_generator_and_finetune_inputs_read_one_record(ligands):
    from gnnff.openmm import GNNFFTemplateGenerator

    generator = GNNFFTemplateGenerator(molecules=f"{ligands}:lig_3", model="sage", charges="mmff94")
    assert len(generator._registered) == 1


def test_cli_parametrize_one_record(ligands):
    folder = ligands.parent
    done = _cli(folder, "parametrize", "ligands.sdf:3", *SAGE)
    assert done.returncode == 0, done.stderr
    assert "wrote ligands-3.xml  record 3 (lig_3)" in done.stdout
    done = _cli(folder, "parametrize", "ligands.sdf", "--name", "lig_1", "-o", "one.xml", *SAGE)
    assert done.returncode == 0, done.stderr
    assert "wrote one.xml  record 1 (lig_1)" in done.stdout
    done = _cli(folder, "parametrize", "ligands.sdf", "--name", "lig_7", *SAGE)
    assert done.returncode == 2
    assert _one_error(done.stderr).startswith("ligands.sdf: no record named 'lig_7' (closest: ")
    done = _cli(folder, "parametrize", "CCO", "--name", "x", *SAGE)
    assert _one_error(done.stderr) == ("SMILES 'CCO': --name selects a record of a molecule file, and this input is a "
                                       "SMILES string; leave --name out")


def test_cli_commands_reading_one_molecule_refuse_several_and_say_how_to_pick(ligands, capsys, monkeypatch):
    monkeypatch.chdir(ligands.parent)
    before = set(os.listdir(ligands.parent))
    for argv in (["simulate", "ligands.sdf"], ["scan", "ligands.sdf", "--torsion", "0", "1", "2", "3"],
                 ["scan", "ligands.sdf", "--name", "lig_2", "--torsion", "auto"]):
        capsys.readouterr()
        assert main(argv) == 2
        error = _one_error(capsys.readouterr().err)
        assert error.startswith("ligands.sdf: holds 5 molecules and one is needed" if "--name" not in argv
                                else "ligands.sdf: 2 records are named 'lig_2' (records 2, 4)"), error
    assert set(os.listdir(ligands.parent)) == before  # no run folder left behind


def test_cli_name_option_on_commands_reading_one_molecule():
    from gnnff.app.cli import build_parser

    parser = build_parser()
    for command in ("parametrize", "simulate", "scan"):
        extra = ["--torsion", "auto"] if command == "scan" else []
        assert parser.parse_args([command, "x.sdf", "--name", "lig 1", *extra]).name == "lig 1"
