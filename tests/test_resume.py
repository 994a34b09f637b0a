"""Reruns and output names of ``gnnff parametrize``, run in a subprocess as users run it.

A rerun may skip an output only when its provenance record (``.NAME.gnnff.json``)
shows the same molecule, model, format and gnnff version; an output made from other
work, or of unknown origin, fails its record with a one-line error suggesting
``--overwrite`` and is left untouched. Output names: a SMILES string gets a name made
from it (not a fixed ``molecule.xml``), an unknown suffix is an error, two-file formats
get both suffixes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import openmm
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from gnnff._version import __version__
from gnnff.app.batch import provenance_path

EXAMPLES = Path(__file__).parents[1] / "examples"
SAGE = ("--model", "sage", "--charges", "mmff94")  # no AM1 run: fast


def gnnff(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "gnnff", "parametrize", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def errors(result: subprocess.CompletedProcess) -> list[str]:
    """The error lines; every line of stderr must be one."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("gnnff: error: ") for line in lines), result.stderr
    return lines


def particles(path: Path) -> int:
    return openmm.XmlSerializer.deserialize(path.read_text()).getNumParticles()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def report(folder: Path) -> list[dict]:
    with (folder / "report.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_smiles_outputs_are_named_after_the_molecule(tmp_path):
    for smiles in ("CCO", "CCN"):
        result = gnnff(tmp_path, smiles, *SAGE)
        assert result.returncode == 0, result.stderr
        assert f"wrote {smiles}.xml" in result.stdout
    assert particles(tmp_path / "CCO.xml") == 9 and particles(tmp_path / "CCN.xml") == 10
    assert not (tmp_path / "molecule.xml").exists()
    # characters a file name should not hold: a slug plus a hash, different for different SMILES
    for smiles in ("[NH3+]CC(=O)[O-]", "[NH3+]CC(=O)O"):
        assert gnnff(tmp_path, smiles, *SAGE, "-q").returncode == 0
    made = sorted(p.name for p in tmp_path.glob("NH3+_CC_=O_O_*.xml"))
    assert len(made) == 2 and all(re.fullmatch(r"NH3\+_CC_=O_O_[0-9a-f]{8}\.xml", name) for name in made)


def test_rerun_with_another_molecule_fails_and_keeps_the_output(tmp_path):
    assert gnnff(tmp_path, "CCO", "-o", "out.xml", *SAGE).returncode == 0
    before = snapshot(tmp_path)
    assert set(before) == {"out.xml", ".out.xml.gnnff.json"}
    record = json.loads(before[".out.xml.gnnff.json"])
    assert record["smiles"] == "CCO" and record["format"] == "xml" and record["gnnff_version"] == __version__
    assert record["model"] == "sage" and "mmff94" in record["model_fingerprint"] and record["files"] == ["out.xml"]

    result = gnnff(tmp_path, "CCN", "-o", "out.xml", *SAGE)
    assert result.returncode == 1
    assert errors(result) == [
        ("gnnff: error: SMILES 'CCN': out.xml exists but was made from other work (molecule CCO, not CCN); "
         "--overwrite replaces it, or choose another output (-o)")]
    assert "1 failed" in result.stdout and "skipped" not in result.stdout
    assert snapshot(tmp_path) == before  # ethanol still there, untouched

    result = gnnff(tmp_path, "CCN", "-o", "out.xml", *SAGE, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert particles(tmp_path / "out.xml") == 10
    assert json.loads((tmp_path / ".out.xml.gnnff.json").read_text())["smiles"] == "CCN"
    result = gnnff(tmp_path, "CCN", "-o", "out.xml", *SAGE)  # now the same work: resumed
    assert result.returncode == 0 and "1 skipped (output exists)" in result.stdout


def test_rerun_with_another_model_fails(tmp_path):
    aspirin = str(EXAMPLES / "aspirin.sdf")
    assert gnnff(tmp_path, aspirin, "-o", "aspirin.xml").returncode == 0  # the shipped network
    before = snapshot(tmp_path)
    result = gnnff(tmp_path, aspirin, "-o", "aspirin.xml", *SAGE)
    assert result.returncode == 1
    (line,) = errors(result)
    assert line == ("gnnff: error: aspirin.sdf record 1 ('aspirin'): aspirin.xml exists but was made from other "
                    "work (model 'gnnff-v1', not 'sage'); --overwrite replaces it, or choose another "
                    "output (-o)")
    assert snapshot(tmp_path) == before

    # the checkpoint is identified by its content, not its path: a copy is the same model
    from gnnff.sources.models import WEIGHTS_DIR

    shutil.copy(WEIGHTS_DIR / "gnnff-v1.pt", tmp_path / "copy.pt")  # the default
    result = gnnff(tmp_path, aspirin, "-o", "aspirin.xml", "--model", "copy.pt")
    assert result.returncode == 0 and "1 skipped (output exists)" in result.stdout, result.stderr
    fingerprint = json.loads((tmp_path / ".aspirin.xml.gnnff.json").read_text())["model_fingerprint"]
    assert fingerprint.startswith("sha256:")


def test_rerun_with_other_model_options_fails(tmp_path):
    assert gnnff(tmp_path, "CCO", "-o", "e.xml", *SAGE).returncode == 0
    result = gnnff(tmp_path, "CCO", "-o", "e.xml", "--model", "sage", "--charges", "am1bcc")
    assert result.returncode == 1
    (line,) = errors(result)
    assert "e.xml exists but was made from other work (model 'sage' with other weights or options)" in line


def test_output_without_provenance_is_not_trusted(tmp_path):
    (tmp_path / "old.xml").write_text("<System/>\n")  # as an older gnnff, or anything else, left it
    result = gnnff(tmp_path, "CCO", "-o", "old.xml", *SAGE)
    assert result.returncode == 1
    (line,) = errors(result)
    assert line.startswith("gnnff: error: SMILES 'CCO': old.xml exists but has no provenance record "
                           ".old.xml.gnnff.json (made by an older gnnff")
    assert line.endswith("--overwrite replaces it, or choose another output (-o)")
    assert snapshot(tmp_path) == {"old.xml": b"<System/>\n"}
    assert gnnff(tmp_path, "CCO", "-o", "old.xml", *SAGE, "--overwrite").returncode == 0
    assert particles(tmp_path / "old.xml") == 9 and provenance_path(tmp_path / "old.xml").is_file()


def test_output_of_another_gnnff_version_fails(tmp_path):
    assert gnnff(tmp_path, "CCO", "-o", "e.xml", *SAGE).returncode == 0
    sidecar = tmp_path / ".e.xml.gnnff.json"
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(dict(record, gnnff_version="0.0.1")))
    result = gnnff(tmp_path, "CCO", "-o", "e.xml", *SAGE)
    assert result.returncode == 1
    assert f"(gnnff 0.0.1, not {__version__})" in errors(result)[0]
    sidecar.write_text("{not json")
    result = gnnff(tmp_path, "CCO", "-o", "e.xml", *SAGE)
    assert result.returncode == 1 and "its provenance record .e.xml.gnnff.json is unreadable" in errors(result)[0]


def _sdf(path: Path, smiles: list[str], seed: int = 1) -> None:
    writer = Chem.SDWriter(str(path))
    for i, s in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(mol, randomSeed=seed)
        mol.SetProp("_Name", f"m{i + 1}")
        writer.write(mol)
    writer.close()


def test_batch_rerun_fails_only_the_changed_record(tmp_path):
    _sdf(tmp_path / "in.sdf", ["CCO", "CCN", "CCC"])
    assert gnnff(tmp_path, "in.sdf", "-o", "out/", *SAGE, "-q").returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".m1.xml.gnnff.json", ".m2.xml.gnnff.json", ".m3.xml.gnnff.json",
        "m1.xml", "m2.xml", "m3.xml", "report.csv", "report.json"]
    outputs = {name: (tmp_path / "out" / name).read_bytes() for name in ("m1.xml", "m2.xml", "m3.xml")}

    _sdf(tmp_path / "in.sdf", ["CCO", "CC=O", "CCC"])  # record 2 is another molecule now
    result = gnnff(tmp_path, "in.sdf", "-o", "out/", *SAGE)
    assert result.returncode == 1
    assert errors(result) == [
        ("gnnff: error: in.sdf record 2 ('m2'): out/m2.xml exists but was made from other work (molecule CCN, "
         "not CC=O); --overwrite replaces it, or choose another output (-o)")]
    rows = report(tmp_path / "out")
    assert [r["status"] for r in rows] == ["skipped", "failed", "skipped"]
    assert rows[1]["error"].startswith("in.sdf record 2 ('m2'): out/m2.xml exists but was made from other work")
    assert {name: (tmp_path / "out" / name).read_bytes() for name in outputs} == outputs  # nothing rewritten

    _sdf(tmp_path / "in.sdf", ["CCO", "CC=O", "CCC"], seed=7)  # the same molecules, other coordinates
    result = gnnff(tmp_path, "in.sdf", "-o", "out/", *SAGE, "-q")
    assert result.returncode == 1
    assert len(errors(result)) == 3
    assert "(the same molecule in other coordinates or atom order)" in errors(result)[0]

    result = gnnff(tmp_path, "in.sdf", "-o", "out/", *SAGE, "-q", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in report(tmp_path / "out")] == ["ok", "ok", "ok"]
    assert particles(tmp_path / "out" / "m2.xml") == 7
    assert not list(tmp_path.rglob("*.tmp"))


def test_workers_write_provenance_and_resume(tmp_path):
    (tmp_path / "in.smi").write_text("CCO\nCCN\nC1CC\nCCC\n")  # no names: outputs numbered by record
    result = gnnff(tmp_path, "in.smi", *SAGE, "-q", "--workers", "2")
    assert result.returncode == 1  # record 3 is no SMILES
    written = sorted(p.name for p in (tmp_path / "in").glob(".*.gnnff.json"))
    assert written == [".0001.xml.gnnff.json", ".0002.xml.gnnff.json", ".0004.xml.gnnff.json"]
    result = gnnff(tmp_path, "in.smi", *SAGE, "--workers", "2")
    assert result.returncode == 1 and "3 skipped (output exists)" in result.stdout


def test_two_file_formats_get_both_suffixes_and_resume(tmp_path):
    result = gnnff(tmp_path, "CCO", "--format", "amber", "-o", "eth", *SAGE, "-q")
    assert result.returncode == 0, result.stderr
    assert set(snapshot(tmp_path)) == {"eth.prmtop", "eth.inpcrd", ".eth.prmtop.gnnff.json"}
    assert json.loads((tmp_path / ".eth.prmtop.gnnff.json").read_text())["files"] == ["eth.prmtop", "eth.inpcrd"]
    openmm.app.AmberPrmtopFile(str(tmp_path / "eth.prmtop"))

    result = gnnff(tmp_path, "CCO", "--format", "amber", "-o", "eth", *SAGE)
    assert result.returncode == 0 and "1 skipped" in result.stdout
    (tmp_path / "eth.inpcrd").unlink()  # a companion gone: the same work is redone, not skipped
    result = gnnff(tmp_path, "CCO", "-o", "eth.prmtop", *SAGE)
    assert result.returncode == 0 and "wrote eth.prmtop" in result.stdout
    assert (tmp_path / "eth.inpcrd").is_file()

    result = gnnff(tmp_path, "CCO", "--format", "gromacs", "-o", "gmx", *SAGE, "-q")
    assert result.returncode == 0, result.stderr
    top = (tmp_path / "gmx.top").read_text()
    assert f"File {tmp_path / 'gmx.top'} " in top and ".tmp" not in top  # the header names the real file
    assert (tmp_path / "gmx.gro").is_file()
    openmm.app.GromacsTopFile(str(tmp_path / "gmx.top"))


def test_numbered_two_file_outputs(tmp_path):
    (tmp_path / "in.smi").write_text("CCO a\nCCN b\n")
    result = gnnff(tmp_path, "in.smi", "-o", "lig.top", *SAGE, "-q")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("lig-*")) == [
        "lig-a.gro", "lig-a.top", "lig-b.gro", "lig-b.top", "lig-report.csv", "lig-report.json"]


KNOWN = ("known: .xml, .ffxml, .prmtop (+ .inpcrd), .top (+ .gro); "
         "rename the output (a folder: end it with /)")


@pytest.mark.parametrize("args, message", [
    (["-o", "out.pdb"], f"out.pdb: unknown output suffix '.pdb'; {KNOWN}"),
    (["-o", "out.inpcrd"], "out.inpcrd: name the main amber file (out.prmtop); its .inpcrd file is written beside it"),
    (["-o", "out.xml", "--format", "gromacs"],
     "out.xml: a .xml file is format xml, not gromacs; name the output out.top or choose format xml"),
])
def test_bad_output_names_are_one_line_errors(tmp_path, args, message):
    result = gnnff(tmp_path, "CCO", *args, *SAGE)
    assert result.returncode == 2
    assert errors(result) == [f"gnnff: error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_several_records_and_an_unknown_suffix(tmp_path):
    (tmp_path / "in.smi").write_text("CCO a\nCCN b\n")
    result = gnnff(tmp_path, "in.smi", "-o", "run.v2", *SAGE)
    assert result.returncode == 2
    assert errors(result) == [f"gnnff: error: run.v2: unknown output suffix '.v2'; {KNOWN}"]
    result = gnnff(tmp_path, "in.smi", "-o", "run.v2/", *SAGE, "-q")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run.v2" / "b.xml").is_file()


def test_provenance_is_written_after_the_output_and_never_alone(tmp_path, monkeypatch, capfd):
    """If the provenance record cannot be written, the record fails and leaves no output."""
    from gnnff.app import batch
    from gnnff.app.cli import main

    monkeypatch.chdir(tmp_path)
    original = batch.atomic_write_text
    seen = []

    def failing(path, text):
        seen.append((Path(path).name, sorted(p.name for p in tmp_path.iterdir())))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch, "atomic_write_text", failing)
    assert main(["parametrize", "CCO", "--format", "amber", "-o", "e", *SAGE, "-q"]) == 1
    assert seen == [(".e.prmtop.gnnff.json", ["e.inpcrd", "e.prmtop"])]  # the output was complete before
    assert "cannot write e.prmtop (No space left on device)" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(batch, "atomic_write_text", original)
