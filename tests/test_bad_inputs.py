"""A catalogue of bad and awkward inputs to ``gnnff parametrize``.

Every case checks the exit code (0 all written, 1 some records failed, 2 nothing could
be done), that each error is ONE line naming the file / record / atom and saying what
to do, that nothing else reaches stderr (no traceback, no RDKit log), and that no
partial output is left (only complete outputs of good records, no temporary files).

Problems with the file, the model or the output location as a whole run the real
command in a subprocess (all of them concurrently, once per module); per-record cases
call :func:`gnnff.app.cli.main` in this process, capturing file descriptors 1 and 2 so
that C++ log lines would show up too.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openmm
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from gnnff.app.cli import main

DATA = Path(__file__).parent / "data"
SUPPORTED = r"supported: H C N O F P S Cl Br I \(Li Na K Rb Cs as monatomic ions\);"


def nowhere(symbol: str) -> str:
    """The advice for an element that no shipped model covers: not 'use another model'."""
    return rf"no model shipped with gnnff covers {symbol}: leave the molecule out, or train a model on data with {symbol}"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _outputs(*names: str) -> set[str]:
    """Output files and each one's provenance record (``.NAME.gnnff.json``)."""
    return {*names, *(f".{name}.gnnff.json" for name in names)}


def check(outcome: Outcome, code: int, *patterns: str) -> list[str]:
    """Exit code, one-line errors matching ``patterns`` in order, nothing else on stderr."""
    assert outcome.code == code, (outcome.code, outcome.stderr)
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert all(line.startswith("gnnff: error: ") for line in lines), outcome.stderr
    assert len(lines) == len(patterns), outcome.stderr
    for line, pattern in zip(lines, patterns):
        assert re.search(pattern, line), (pattern, line)
    return lines


def _molblock(smiles: str, *, hydrogens: bool = True, name: str = "", seed: int = 3) -> str:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    if not hydrogens:
        mol = Chem.RemoveHs(mol)
    mol.SetProp("_Name", name)
    return Chem.MolToMolBlock(mol)


def _sdf(*blocks: str) -> str:
    return "".join(block + "$$$$\n" for block in blocks)


# --- whole-file, model and output-location problems: the real command, in subprocesses ---

def _write(name: str, content: bytes | str):
    def setup(folder: Path) -> None:
        path = folder / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    return setup


def _read_only_target(folder: Path) -> str:
    """A folder this process cannot write to: chmod 555, or, for root (who ignores modes), /sys."""
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if not os.access(locked, os.W_OK):
        return "locked/out/"
    locked.chmod(0o755)
    locked.rmdir()
    return "/sys/gnnff-test-out/"


_ETHANOL = _molblock("CCO", name="ethanol")
_GOOD_GZ = gzip.compress(_sdf(_ETHANOL, _ETHANOL).encode())

#: name -> (setup(folder) -> None | "-o" target, arguments, exit code, error pattern)
FILE_CASES = {
    "empty file": (_write("empty.sdf", b""), ["empty.sdf"], 2,
                   r"^gnnff: error: empty\.sdf: file is empty; it must hold at least one molecule$"),
    "blank file": (_write("blank.smi", "  \n\n\t\n"), ["blank.smi"], 2, r"blank\.smi: file is empty"),
    "binary garbage": (_write("junk.sdf", bytes(range(256)) * 8), ["junk.sdf"], 2,
                       r"junk\.sdf: binary data, not a \.sdf text file; give a text molecule file"),
    "binary without NUL bytes": (_write("high.mol2", bytes(range(128, 256)) * 16), ["high.mol2"], 2,
                                 r"high\.mol2: binary data"),
    "corrupt gzip": (_write("mols.sdf.gz", _GOOD_GZ[: len(_GOOD_GZ) // 2]), ["mols.sdf.gz"], 2,
                     r"mols\.sdf\.gz: cannot read file \(.+\); check that it is a complete, readable \.sdf\.gz"),
    "pdb extension": (_write("ligand.pdb", "HETATM    1  C1  LIG A   1       0.000   0.000   0.000  1.00  0.00           C\n"),
                      ["ligand.pdb"], 2, r"ligand\.pdb: unsupported format '\.pdb'; use one of \.sdf, \.sdf\.gz"),
    "txt extension": (_write("mols.txt", "CCO\n"), ["mols.txt"], 2,
                      r"mols\.txt: unsupported format '\.txt'; use one of .*\.smi"),
    "missing input": (None, ["absent.sdf"], 2, r"absent\.sdf: no such file; check the path"),
    "input is a folder": (lambda folder: (folder / "mols.sdf").mkdir(), ["mols.sdf"], 2,
                          r"mols\.sdf: is a folder; give a molecule file"),
    "empty SMILES argument": (None, [""], 2, r"empty input: give a molecule file or a SMILES string"),
    "truncated single-record SDF": (_write("cut.sdf", _ETHANOL[: len(_ETHANOL) // 2]), ["cut.sdf"], 1,
                                    (r"cut\.sdf record 1 \('ethanol'\): the record is truncated \(.*\), the file is "
                                     r"incomplete; export it again")),
    "missing model file": (None, ["CCO", "--model", "missing.pt"], 2,
                           (r"missing\.pt: no such model file; give the path of a trained model \(\.pt\) or a "
                            r"model name \(gnnff-industry-v0, gnnff-v1, sage, sage-2\.3\)")),
    "corrupted model file": (_write("bad.pt", bytes(range(200))), ["CCO", "--model", "bad.pt"], 2,
                             (r"bad\.pt: not a readable gnnff checkpoint \(\w+\); the file is corrupted or not a "
                              r"model, copy or train it again")),
    "model file of another kind": (_write("notes.pt", "just text\n"), ["CCO", "--model", "notes.pt"], 2,
                                   r"notes\.pt: not a readable gnnff checkpoint"),
    "unknown model name": (None, ["CCO", "--model", "espaloma"], 2,
                           r"unknown model 'espaloma'; known models: gnnff-industry-v0, gnnff-v1, sage, sage-2\.3$"),
    "--charges without --model sage": (None, ["CCO", "--charges", "am1bcc"], 2,
                                       r"--charges applies to the classical models: add --model sage or --model sage-2\.3"),
    "unknown charge method": (None, ["CCO", "--model", "sage", "--charges", "resp"], 2,
                              r"unknown charge method 'resp'; known: am1bcc, am1bcc-fast, am1bcc-mmff, mmff94, nagl \(the charges option of model 'sage'\)"),
    "output under a file": (_write("blocker", "a file where a folder should be\n"), ["CCO", "-o", "blocker/x.xml"], 2,
                            r"cannot write blocker/x\.xml: blocker is a file, not a folder; choose another output \(-o\)"),
    "read-only output folder": (_read_only_target, ["CCO", "-o", None], 2,
                                (r"cannot write .*out/ \((Permission denied|Operation not permitted)\); "
                                 r"choose a writable output \(-o\)")),
}


def _run_case(folder: Path, args: list[str]) -> Outcome:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-m", "gnnff", "parametrize", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def file_cases(tmp_path_factory):
    """Run every FILE_CASES command once, concurrently; name -> (folder, files before, outcome)."""
    prepared = {}
    for i, (name, (setup, args, _, _)) in enumerate(FILE_CASES.items()):
        folder = tmp_path_factory.mktemp(f"case{i}")
        target = setup(folder) if setup else None
        args = [target if a is None else a for a in args]
        prepared[name] = (folder, _files(folder), args)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run_case, folder, args) for name, (folder, _, args) in prepared.items()}
        outcomes = {name: future.result() for name, future in futures.items()}
    yield {name: (folder, before, outcomes[name]) for name, (folder, before, _) in prepared.items()}
    for folder, _, _ in prepared.values():
        for path in folder.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_file_level_problem(file_cases, case):
    folder, before, outcome = file_cases[case]
    _, _, code, pattern = FILE_CASES[case]
    check(outcome, code, pattern)
    assert _files(folder) == before  # nothing written, no folder made, no temporary file left


# --- per-record problems and awkward-but-valid inputs: gnnff.app.cli.main in this process ---

@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    """Run ``gnnff parametrize ARGS`` in ``tmp_path``; return the Outcome."""
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> Outcome:
        capfd.readouterr()
        code = main(["parametrize", *args])
        out = capfd.readouterr()
        return Outcome(code, out.out, out.err)

    return call


def _report(folder: Path) -> list[dict]:
    with (folder / "report.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _system(path: Path) -> openmm.System:
    return openmm.XmlSerializer.deserialize(path.read_text())


def _charges(system: openmm.System) -> list[float]:
    force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    return [force.getParticleParameters(i)[0].value_in_unit(openmm.unit.elementary_charge)
            for i in range(force.getNumParticles())]


def test_broken_record_among_good_ones(tmp_path, cli):
    cut = _molblock("CCN", name="cut")
    (tmp_path / "mixed.sdf").write_text(_sdf(_ETHANOL, "\n".join(cut.split("\n")[:7]), _molblock("CC=O", name="ald")))
    outcome = cli("mixed.sdf", "-o", "out", "-q")
    check(outcome, 1, r"^gnnff: error: mixed\.sdf record 2 \('cut'\): the record is truncated .*export it again$")
    assert _files(tmp_path / "out") == _outputs("ethanol.xml", "ald.xml") | {"report.csv", "report.json"}
    rows = _report(tmp_path / "out")
    assert [(r["record"], r["name"], r["status"]) for r in rows] == [
        ("1", "ethanol", "ok"), ("2", "cut", "failed"), ("3", "ald", "ok")]
    assert rows[1]["error"].startswith("mixed.sdf record 2 ('cut'): the record is truncated")


def test_broken_line_in_smiles_file(tmp_path, cli):
    (tmp_path / "in.smi").write_text("CCO ethanol\nCC(C ring\nc1ccccc1 benzene\n")
    check(cli("in.smi", "-q"), 1, r"^gnnff: error: in\.smi record 2 \('ring'\): RDKit cannot parse SMILES 'CC\(C'; "
                                  r"check its syntax \(brackets, ring-closure digits, element symbols\)$")
    assert [r["status"] for r in _report(tmp_path / "in")] == ["ok", "failed", "ok"]


def test_broken_record_in_mol2(tmp_path, cli):
    text = (DATA / "ethanol_acetate.mol2").read_text()
    broken = text.replace("     1     1     2 1", "     1     1    42 1", 1)  # bond to a missing atom
    (tmp_path / "two.mol2").write_text(broken)
    check(cli("two.mol2", "-q"), 1, r"two\.mol2 record 1 \('ethanol'\): RDKit cannot parse the MOL2 record; check its "
                                    r"atom types and bonds$")
    assert _files(tmp_path / "two") == _outputs("acetate.xml") | {"report.csv", "report.json"}


def test_smiles_syntax_error(tmp_path, cli):
    check(cli("C1CC(", "-q"), 1, r"^gnnff: error: SMILES 'C1CC\(': RDKit cannot parse it as SMILES; check its syntax "
                                 r"\(brackets, ring-closure digits, element symbols\)$")
    assert _files(tmp_path) == set()


def test_3d_record_without_hydrogens(tmp_path, cli):
    (tmp_path / "noh.sdf").write_text(_sdf(_molblock("CCO", hydrogens=False, name="bare")))
    check(cli("noh.sdf", "-q"), 1,
          r"noh\.sdf record 1 \('bare'\): atom 0 \(C\) lacks 3 hydrogen\(s\) \(3 atoms do\); a 3D input must list "
          r"every hydrogen, add them with coordinates")
    assert _files(tmp_path) == {"noh.sdf"}


def test_2d_record_without_hydrogens_gets_them(tmp_path, cli):
    # no 3D coordinates: the record is read like a SMILES, hydrogens appended after the input's atoms
    mol = Chem.MolFromSmiles("OCC=O")
    AllChem.Compute2DCoords(mol)
    (tmp_path / "flat.sdf").write_text(_sdf(Chem.MolToMolBlock(mol)))
    check(cli("flat.sdf", "-o", "flat.xml", "-q"), 0)
    system = _system(tmp_path / "flat.xml")
    assert system.getNumParticles() == 8
    assert [system.getParticleMass(i)._value > 2 for i in range(8)] == [True] * 4 + [False] * 4


def test_placeholder_coordinates_all_zero(tmp_path, cli):
    block = _molblock("CC(=O)O", hydrogens=False, name="zeros")
    lines = block.split("\n")
    n_atoms = int(lines[3][:3])
    for i in range(4, 4 + n_atoms):
        lines[i] = "    0.0000    0.0000    0.0000" + lines[i][30:]
    (tmp_path / "zeros.sdf").write_text(_sdf("\n".join(lines)))
    check(cli("zeros.sdf", "-o", "zeros.xml", "-q"), 0)  # read as no coordinates: hydrogens added
    assert _system(tmp_path / "zeros.xml").getNumParticles() == 8


def test_radical(tmp_path, cli):
    (tmp_path / "rad.smi").write_text("C[CH2] ethyl\n")
    check(cli("rad.smi", "-q"), 1,
          r"rad\.smi record 1 \('ethyl'\): atom 1 \(C\) has 1 unpaired electron\(s\); radicals are not supported, "
          r"add the missing hydrogens or charge")
    assert _files(tmp_path) == {"rad.smi"}


@pytest.mark.parametrize("smiles, atom, symbol", [
    ("CC[Fe+2]CC", 2, "Fe"),
    ("C[Si](C)(C)C", 1, "Si"),
    ("OB(O)c1ccccc1", 1, "B"),
])
def test_element_outside_the_model(tmp_path, cli, smiles, atom, symbol):
    (tmp_path / "el.smi").write_text(f"{smiles} x\n")
    check(cli("el.smi", "-q"), 1,
          rf"el\.smi record 1 \('x'\): atom {atom} \({symbol}\) is an element model 'gnnff-v1' does not "
          rf"cover; {SUPPORTED} {nowhere(symbol)}")
    assert not list(tmp_path.rglob("*.xml"))


def test_unknown_element_symbol(tmp_path, cli):
    block = _molblock("CCO", name="odd").replace(" O   ", " Xx  ", 1)
    (tmp_path / "xx.sdf").write_text(_sdf(block))
    check(cli("xx.sdf", "-q"), 1, r"xx\.sdf record 1 \('odd'\): atom 2 has unknown element 'Xx'; fix the atom symbol")
    assert _files(tmp_path) == {"xx.sdf"}


def test_dummy_atom(tmp_path, cli):
    check(cli("*CC", "-q"), 1, r"^gnnff: error: SMILES '\*CC': atom 0 \(\*\) is a dummy atom; replace it by a real element")


@pytest.mark.parametrize("smiles, why", [
    ("C(C)(C)(C)(C)C", r"Explicit valence for atom # 0 C, 5"),
    ("c1cccc1", r"Can't kekulize mol"),
])
def test_impossible_chemistry(tmp_path, cli, smiles, why):
    check(cli(smiles, "-q"), 1, rf"RDKit cannot sanitize the molecule \({why}.*\); fix the bond orders, charges or "
                                r"hydrogens of the atoms it names")
    assert _files(tmp_path) == set()


def test_record_without_atoms(tmp_path, cli):
    (tmp_path / "none.sdf").write_text("nothing\n  RDKit\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n")
    check(cli("none.sdf", "-q"), 1, r"none\.sdf record 1 \('nothing'\): the molecule has no atoms")


def test_salt_is_one_system_with_exact_component_charges(tmp_path, cli):
    # decision: a multi-component record (salt, hydrate) is ONE System in the input's atom
    # order; each component is parametrized alone and keeps its own net charge exactly
    check(cli("C[NH3+].[Cl-].O", "-o", "salt.xml", "-q"), 0)
    charges = _charges(_system(tmp_path / "salt.xml"))
    assert len(charges) == 12
    assert charges[2] == pytest.approx(-1.0, abs=1e-12)  # the chloride: no charge flows to the cation
    assert sum(charges) == pytest.approx(0.0, abs=1e-9)


def test_salt_with_an_ion_outside_the_model(tmp_path, cli):
    check(cli("CC(=O)[O-].[Ca+2]", "-q"), 1,
          rf"atom 4 \(Ca\) is an element model 'gnnff-v1' does not cover; {SUPPORTED} {nowhere('Ca')}")


def test_element_another_shipped_model_covers_points_to_it(tmp_path):
    """gnnff-industry-v0 does not cover iodine; gnnff-v1 and Sage do: the advice is another model."""
    from gnnff.api import assign_parameters
    from gnnff.errors import ParametrizationError

    with pytest.raises(ParametrizationError, match=r"atom 0 \(I\) is an element model 'gnnff-industry-v0' does not "
                                                   r"cover; .*; leave the molecule out or use a model that covers I "
                                                   r"\(`gnnff models` lists each model's elements\)$"):
        assign_parameters("ICC", model="gnnff-industry-v0")


def test_sage_refuses_an_element_it_lacks_at_once():
    """The element check runs before the OpenFF toolkit or AmberTools load (it took 6.8 s)."""
    import subprocess
    import sys
    import time

    code = ("import time, gnnff; t = time.perf_counter()\n"
            "try: gnnff.parametrize('OB(O)c1ccccc1', model='sage')\n"
            "except gnnff.ParametrizationError as e: print(round(time.perf_counter() - t, 2), e)\n"
            "import sys; print('openff.toolkit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout.split("\n")
    assert "no model shipped with gnnff covers B" in out[0] and out[1] == "False", out


@pytest.mark.parametrize("smiles, charge", [
    ("CC(=O)[O-]", -1), ("C[NH3+]", 1), ("[O-]C(=O)CCC(=O)[O-]", -2), ("[NH3+]CCCC[NH3+]", 2),
    ("[NH3+][C@@H](C)C(=O)[O-]", 0), ("C[N+](C)(C)CC(=O)[O-]", 0), ("[Cl-]", -1),
])
def test_charged_molecules_and_zwitterions_keep_their_net_charge(tmp_path, cli, smiles, charge):
    outcome = cli(smiles, "-o", "ion.xml")
    check(outcome, 0)
    assert f"net charge {charge:+d}" in outcome.stdout
    assert sum(_charges(_system(tmp_path / "ion.xml"))) == pytest.approx(charge, abs=1e-9)


def test_very_large_molecule(tmp_path, cli):
    peptide = "N" + "CC(=O)N" * 399 + "CC(=O)O"  # polyglycine, 400 residues, 2,803 atoms
    outcome = cli(peptide, "-o", "big.xml")
    check(outcome, 0)
    system = _system(tmp_path / "big.xml")
    assert system.getNumParticles() == 2803
    assert sum(_charges(system)) == pytest.approx(0.0, abs=1e-8)


def test_duplicate_atom_names_in_mol2(tmp_path, cli):
    text = (DATA / "ethanol_acetate.mol2").read_text()
    ethanol = text[: text.index("@<TRIPOS>MOLECULE", 1)]
    head, rest = ethanol.split("@<TRIPOS>ATOM\n")
    atoms, tail = rest.split("@<TRIPOS>BOND")
    atoms = re.sub(r"^(\s+\d+ )\S+", r"\1X", atoms, flags=re.MULTILINE)  # every atom named X
    assert atoms.count(" X ") == 9
    same = head + "@<TRIPOS>ATOM\n" + atoms + "@<TRIPOS>BOND" + tail
    (tmp_path / "same.mol2").write_text(same)
    check(cli("same.mol2", "-o", "same.xml", "-q"), 0)
    assert _system(tmp_path / "same.xml").getNumParticles() == 9


def test_name_that_is_not_utf8(tmp_path, cli):
    block = _ETHANOL.split("\n", 1)[1]
    (tmp_path / "latin1.sdf").write_bytes(b"Caf\xe9 \xb5-ol\n" + block.encode() + b"$$$$\n")
    outcome = cli("latin1.sdf", "-o", "out/")
    check(outcome, 0)
    assert "Caf\ufffd \ufffd-ol" in outcome.stdout  # undecodable bytes shown as U+FFFD, not an exception
    document = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert document["records"][0]["name"] == "Caf\ufffd \ufffd-ol"


def test_windows_line_endings(tmp_path, cli):
    (tmp_path / "crlf.sdf").write_bytes(_sdf(_ETHANOL, _ETHANOL).replace("\n", "\r\n").encode())
    check(cli("crlf.sdf", "-q"), 0)
    assert _files(tmp_path / "crlf") == _outputs("ethanol.xml", "ethanol_2.xml") | {"report.csv", "report.json"}


def test_output_is_an_existing_folder(tmp_path, cli):
    (tmp_path / "results").mkdir()
    check(cli("CCO", "-o", "results", "-q"), 0)  # an existing folder is a folder target, even for one molecule
    assert _files(tmp_path / "results") == _outputs("0001.xml") | {"report.csv", "report.json"}


def test_numbered_output_taken_by_a_folder(tmp_path, cli):
    (tmp_path / "in.smi").write_text("CCO a\nCCN b\nCCC c\n")
    (tmp_path / "out" / "b.xml").mkdir(parents=True)
    check(cli("in.smi", "-o", "out", "-q"), 1,
          r"in\.smi record 2 \('b'\): cannot write out/b\.xml: it is a folder; remove it or choose another output")
    assert _files(tmp_path / "out") == _outputs("a.xml", "c.xml") | {"b.xml", "report.csv", "report.json"}
    assert (tmp_path / "out" / "b.xml").is_dir()


def test_workers_must_be_positive(tmp_path, cli):
    check(cli("CCO", "--workers", "0"), 2, r"--workers must be a number of at least 1 or 'auto', not '0'")
    check(cli("CCO", "--workers", "many"), 2, r"--workers must be a number of at least 1 or 'auto', not 'many'")
    assert _files(tmp_path) == set()


def test_tiny_molecules(tmp_path, cli):
    check(cli("[H][H]", "-o", "h2.xml", "-q"), 0)
    check(cli("[Br-]", "-o", "br.xml", "-q"), 0)
    assert _charges(_system(tmp_path / "br.xml")) == [pytest.approx(-1.0, abs=1e-12)]


def test_smiles_with_stereo_slashes_is_not_a_path(tmp_path, cli):
    # '/' is double-bond stereo in SMILES; without an existing folder or a file suffix it is no path
    outcome = cli("F/C=C/F", "-o", "trans.xml")
    check(outcome, 0)
    assert _system(tmp_path / "trans.xml").getNumParticles() == 6


def test_smiles_longer_than_a_file_name(tmp_path, cli):
    check(cli("C" * 300, "-o", "long.xml", "-q"), 0)  # the operating system refuses it as a path
    assert _system(tmp_path / "long.xml").getNumParticles() == 902
