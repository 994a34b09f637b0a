"""Papercuts of issue 33: picking one molecule of a multi-molecule file (``FILE:N``,
``FILE:NAME``, ``--name``, ``record=``), batch outputs named after their records, one
shape for input errors, and progress without a terminal."""

from __future__ import annotations

import io
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
from gnnff.app.formats import output_stems, title_stem
from gnnff.chem.molecule import count_records, looks_like_path, read_records, record_titles, split_selector
from gnnff.errors import ChemistryError, InputError
from gnnff.progress import PlainProgress, progress

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


# --- 1. one molecule of a file of several -------------------------------------------------

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


# --- 2. batch outputs named after their records ------------------------------------------

def test_title_stems_are_safe():
    assert title_stem("Lig 1 (S)") == "Lig_1_S"
    assert title_stem("  aspirin  ") == "aspirin"
    assert title_stem("../../etc/passwd") == "etc_passwd"
    assert title_stem(".hidden") == "hidden" and title_stem("-rf") == "rf"
    assert title_stem("*****") == "" and title_stem("") == ""  # MOL2's empty name: no title
    assert title_stem("CON") == "CON_" and title_stem("nul.txt") == "nul.txt_"
    assert title_stem("é" * 3 + "x") == "x"
    assert len(title_stem("a" * 500)) == 80


def test_output_stems_unique_deterministic_with_index_fallback():
    titles = ["lig", "LIG", "lig", "", "lig_2", "a b", "a/b", ""]
    stems = output_stems(titles)
    assert stems == ["lig", "LIG_3", "lig_4", "0004", "lig_2", "a_b", "a_b_2", "0008"]
    assert output_stems(titles) == stems  # the same input: the same names (resume)
    assert len({s.lower() for s in stems}) == len(stems)  # unique on case-insensitive file systems
    assert output_stems([""] * 10000)[-1] == "10000" and output_stems(["", ""]) == ["0001", "0002"]


def test_batch_outputs_named_after_titles_and_resumed_under_the_same_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _sdf(tmp_path / "in.sdf", [("CCO", "ethanol"), ("CCN", "amine 1"), ("CCO", "ethanol"), ("CC=O", "")])
    assert main(["parametrize", "in.sdf", "-o", "out/", "-q", *SAGE]) == 0
    outputs = sorted(p.name for p in (tmp_path / "out").glob("*.xml"))
    assert outputs == ["0004.xml", "amine_1.xml", "ethanol.xml", "ethanol_2.xml"]
    capsys.readouterr()
    assert main(["parametrize", "in.sdf", "-o", "out/", *SAGE]) == 0
    assert "4 skipped (output exists)" in capsys.readouterr().out


def test_untitled_smiles_lines_are_numbered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.smi").write_text("CCO\nCCN named\nCCC\n")
    assert main(["parametrize", "in.smi", "-q", *SAGE]) == 0
    assert sorted(p.name for p in (tmp_path / "in").glob("*.xml")) == ["0001.xml", "0003.xml", "named.xml"]


# --- 3. one shape for input errors: "<input>: <what is wrong>; <what to do>" --------------

FIX = "check its syntax (brackets, ring-closure digits, element symbols)"


@pytest.mark.parametrize("molecule, kwargs, error, message", [
    ("C1CC(", {}, InputError, f"SMILES 'C1CC(': RDKit cannot parse it as SMILES; {FIX}"),
    ("C1CC(", {"name": "ring"}, InputError, f"ring: RDKit cannot parse SMILES 'C1CC('; {FIX}"),
    ("[CH3]", {}, ChemistryError, "SMILES '[CH3]': atom 0 (C) has 1 unpaired electron(s); radicals are not "
                                  "supported, add the missing hydrogens or charge"),
    ("C(C)(C)(C)(C)C", {}, ChemistryError, "SMILES 'C(C)(C)(C)(C)C': RDKit cannot sanitize the molecule (Explicit "
                                           "valence for atom # 0 C, 5, is greater than permitted); fix the bond "
                                           "orders, charges or hydrogens of the atoms it names"),
    ("absent.sdf", {}, InputError, "absent.sdf: no such file; check the path"),
    (42, {}, InputError, "input of type int: gnnff cannot read a molecule from it; pass an RDKit Mol, an OpenFF "
                         "Molecule, a SMILES string or a file path"),
])
def test_api_input_errors_name_the_input_once(molecule, kwargs, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        gnnff.load_molecule(molecule, **kwargs)


def test_smiles_file_errors_name_the_smiles_once(tmp_path):
    path = tmp_path / "in.smi"
    path.write_text("C1CC\nCC(C ring\n")
    first, second = (str(r.error) for r in read_records(path))
    assert first == f"in.smi record 1 ('C1CC'): RDKit cannot parse it as SMILES; {FIX}"
    assert second == f"in.smi record 2 ('ring'): RDKit cannot parse SMILES 'CC(C'; {FIX}"


SHAPE = re.compile(r"^(?P<input>.+?): (?P<wrong>[^;]+); (?P<fix>[^;]+)$")


@pytest.mark.parametrize("args, message", [
    (["parametrize", "C1CC("], f"SMILES 'C1CC(': RDKit cannot parse it as SMILES; {FIX}"),
    (["simulate", "C1CC(", "--solvent", "vacuum"], f"SMILES 'C1CC(': RDKit cannot parse it as SMILES; {FIX}"),
    (["parametrize", "[CH3]"], "SMILES '[CH3]': atom 0 (C) has 1 unpaired electron(s); radicals are not supported, "
                               "add the missing hydrogens or charge"),
    (["parametrize", "bad.smi"], f"bad.smi record 1 ('x'): RDKit cannot parse SMILES 'C1CC'; {FIX}"),
    (["parametrize", "absent.sdf"], "absent.sdf: no such file; check the path"),
])
def test_cli_input_errors_have_one_shape(tmp_path, args, message):
    (tmp_path / "bad.smi").write_text("C1CC x\n")
    done = _cli(tmp_path, *args, *(SAGE if args[0] == "parametrize" else ()))
    error = _one_error(done.stderr)
    assert error == message
    assert SHAPE.match(error), error
    smiles = args[1] if not args[1].endswith((".smi", ".sdf")) else None
    assert smiles is None or error.count(smiles) == 1  # the input named once


# --- 4. progress without a terminal -------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_a_terminal_writes_a_bounded_number_of_plain_lines():
    stream = io.StringIO()
    assert sum(progress(range(10_000), desc="charges", unit="mol", file=stream)) == sum(range(10_000))
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 10 <= len(lines) <= 12
    assert all(re.fullmatch(r"charges: \d+/10000 mol \(\d+ %\) in \d+ s(, [\d.e+]+ mol/s)?", line) for line in lines)
    assert lines[-1].startswith("charges: 10000/10000 mol (100 %)")


def test_progress_by_hand_with_unknown_total_and_postfix():
    stream = io.StringIO()
    with progress(desc="md", unit="step", file=stream, interval=0.0) as bar:
        assert isinstance(bar, PlainProgress)
        bar.update(2.5)
        bar.set_postfix_str("E = -1 kJ/mol")
        bar.update(2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("md: 2.5 step in ") and lines[1].endswith(", E = -1 kJ/mol")


def test_progress_on_a_terminal_is_a_tqdm_bar_and_disable_is_tqdms():
    from tqdm import tqdm

    with progress(total=3, file=_Terminal()) as bar:
        assert isinstance(bar, tqdm)
    quiet = io.StringIO()
    for disable in (True, None):  # None: a bar on a terminal only, as tqdm's disable=None
        list(progress(range(100), disable=disable, file=quiet))
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    list(progress(range(100), disable=True, file=terminal))
    assert terminal.getvalue() == ""


def test_progress_to_a_pipe_from_a_subprocess():
    code = "from gnnff.progress import progress\nfor _ in progress(range(5000), desc='x'): pass\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "\r" not in done.stderr and 10 <= len(done.stderr.splitlines()) <= 12
