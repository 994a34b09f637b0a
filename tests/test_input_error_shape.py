"""One shape for input errors, ``<input>: <what is wrong>; <what to do>``, the input named
once, through the API and the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gnnff
from gnnff.chem.molecule import read_records
from gnnff.errors import ChemistryError, InputError

SAGE = ("--model", "sage", "--charges", "mmff94")  # no AM1 run: fast


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "gnnff", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def _one_error(stderr: str) -> str:
    """The only line of stderr, which must be one ``gnnff: error:`` line; without the prefix."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gnnff: error: "), stderr
    return lines[0].removeprefix("gnnff: error: ")


FIX = "check its syntax (brackets, ring-closure digits, element symbols)"


SHAPE = re.compile(r"^(?P<input>.+?): (?P<wrong>[^;]+); (?P<fix>[^;]+)$")


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
