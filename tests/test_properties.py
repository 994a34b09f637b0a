"""Property-based tests (hypothesis): random and mutated inputs never escape as anything
but a :class:`gnnff.GnnffError`, and every molecule that is accepted gets a System whose
net charge equals its formal charge, component by component.

Runs are kept small (tens of examples, no deadline) so the suite stays fast.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rdkit import Chem
from rdkit.Chem import AllChem

import gnnff
from gnnff.app.cli import main
from gnnff.chem.molecule import components, load_molecule, read_records
from gnnff.errors import GnnffError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Valid starting points: neutral, ions, zwitterions, salts, stereo, rings, every element of the model.
SEEDS = [
    "CC(=O)Oc1ccccc1C(=O)O", "CC(=O)[O-]", "C[NH3+]", "[NH3+]CC(=O)[O-]", "c1ccc2[nH]ccc2c1",
    "C/C=C/C(=O)N", "O=[N+]([O-])c1ccc(Cl)cc1", "COP(=O)([O-])[O-]", "CS(=O)(=O)N1CCC(F)(F)CC1",
    "Brc1cncc(C#N)c1", "C[C@H](N)C(=O)O", "C[NH3+].[Cl-]", "[O-]C(=O)CCC(=O)[O-].[NH4+].[NH4+]",
    "OCC1OC(O)C(O)C(O)C1O", "C1CC1C2CC2", "N=C(N)NCCC[C@H]([NH3+])C(=O)[O-]",
]
#: Characters that SMILES use, plus a few that they do not.
SMILES_ALPHABET = "CNOSPFIBrcnospl()[]=#$@+-\\/.%0123456789H*:~ "


@pytest.fixture(scope="module")
def model():
    return gnnff.get_model()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@st.composite
def mutated(draw, seeds: list[str], alphabet: str) -> str:
    """A seed string with a few random edits (insert, delete, replace, duplicate a span)."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        char = draw(st.sampled_from(alphabet))
        if edit == "insert":
            text = text[:i] + char + text[i:]
        elif edit == "delete":
            text = text[:i] + text[i + 1:]
        elif edit == "replace":
            text = text[:i] + char + text[i + 1:]
        else:
            j = draw(st.integers(i, min(len(text), i + 8)))
            text = text[:j] + text[i:j] + text[j:]
    return text


def _assert_exact_charges(result: gnnff.Parametrized) -> None:
    charges = result.parameters.nonbonded.charge
    assert abs(float(charges.sum()) - Chem.GetFormalCharge(result.mol)) < 1e-9
    for indices, part in components(result.mol):
        assert abs(float(charges[indices].sum()) - Chem.GetFormalCharge(part)) < 1e-9
    assert result.to_openmm().getNumParticles() == result.mol.GetNumAtoms()


def _parametrize_or_gnnff_error(text: str, model) -> gnnff.Parametrized | None:
    try:
        mol = load_molecule(text)
    except GnnffError:
        return None
    try:
        return gnnff.assign_parameters(mol, model=model)
    except GnnffError:
        return None


@SETTINGS
@given(text=st.text(alphabet=SMILES_ALPHABET, max_size=24))
def test_random_strings(text, model):
    assume(not os.path.exists(text.strip()))  # not a real file of the working folder
    result = _parametrize_or_gnnff_error(text, model)
    if result is not None:
        _assert_exact_charges(result)


@SETTINGS
@given(text=mutated(SEEDS, SMILES_ALPHABET))
def test_mutated_smiles(text, model):
    assume(not os.path.exists(text.strip()))
    result = _parametrize_or_gnnff_error(text, model)
    if result is not None:
        _assert_exact_charges(result)


@settings(max_examples=25, deadline=None)
@given(text=st.sampled_from(SEEDS))
def test_valid_seeds_keep_their_formal_charge(text, model):
    result = gnnff.assign_parameters(text, model=model)
    _assert_exact_charges(result)


def _seed_sdf() -> str:
    blocks = []
    for i, smiles in enumerate(["CC(=O)[O-]", "c1ccccc1O", "C[NH3+]"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=11)
        mol.SetProp("_Name", f"m{i}")
        blocks.append(Chem.MolToMolBlock(mol) + "$$$$\n")
    return "".join(blocks)


SDF = _seed_sdf()
SDF_LINES = SDF.split("\n")


@st.composite
def mutated_sdf(draw) -> str:
    """The three-record SDF with line-level edits: delete, duplicate, swap, retype, cut."""
    lines = list(SDF_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["delete", "duplicate", "swap", "chars", "cut", "garbage"]))
        if edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif edit == "chars":
            line = lines[i]
            k = draw(st.integers(0, len(line)))
            new = draw(st.text(alphabet="0123456789 .-+XCNO$M\t", min_size=1, max_size=6))
            lines[i] = line[:k] + new + line[k + len(new):]
        elif edit == "cut":
            lines = lines[:i]
        else:
            lines.insert(i, draw(st.text(max_size=40)))
        if not lines:
            break
    return "\n".join(lines)


@SETTINGS
@given(text=mutated_sdf())
def test_mutated_sdf_records_are_molecules_or_gnnff_errors(text, model):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutated.sdf"
        path.write_text(text, encoding="utf-8")
        try:
            records = list(read_records(path))
        except GnnffError:
            return  # the file as a whole is refused (empty, binary, no molecule)
        for record in records:
            assert (record.mol is None) != (record.error is None)
            assert isinstance(record.error, (GnnffError, type(None)))
            if record.mol is not None:
                try:
                    result = gnnff.assign_parameters(record.mol, model=model)
                except GnnffError:
                    continue
                _assert_exact_charges(result)


@settings(max_examples=30, deadline=None)
@given(text=mutated_sdf())
def test_mutated_sdf_through_the_command_line(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutated.sdf"
        path.write_text(text, encoding="utf-8")
        out = Path(folder) / "out"
        code = main(["parametrize", str(path), "-o", str(out) + "/", "-q"])
        assert code in (0, 1, 2)
        written = sorted(out.glob("*.xml")) if out.is_dir() else []
        if code == 2:
            assert not out.exists()  # nothing could be done: nothing written
        else:
            with (out / "report.csv").open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
            status = [row["status"] for row in rows]
            assert [p.name for p in written] == sorted(Path(row["output"]).name for row in rows if row["status"] == "ok")
            assert (code == 0) == all(s == "ok" for s in status)
        assert not [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".sdf", ".mol2", ".smi", ".sdf.gz", ".mol"]))
def test_random_bytes_as_a_molecule_file(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"bytes{suffix}"
        path.write_bytes(data)
        try:
            records = list(read_records(path))
        except GnnffError:
            return
        assert all(isinstance(r.error, (GnnffError, type(None))) for r in records)
