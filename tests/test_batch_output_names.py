"""Batch outputs named after their records' titles: sanitised, unique, deterministic (so a
resumed run finds them), the record number where a record has no title."""

from __future__ import annotations

from pathlib import Path

from rdkit import Chem
from rdkit.Chem import AllChem

from gnnff.app.cli import main
from gnnff.app.formats import output_stems, title_stem

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
