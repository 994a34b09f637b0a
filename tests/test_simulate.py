"""`gnnff simulate` and the MD examples, at a tiny number of steps."""

from __future__ import annotations

import csv
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import unit

import gnnff
from gnnff.app.simulate import RUN_FILES, SimulationConfig, _StabilityCheck, build_simulation_system

ROOT = Path(__file__).resolve().parents[1]
ASPIRIN = ROOT / "examples" / "aspirin.sdf"
COMPLEX = ROOT / "examples" / "protein-ligand"


def _gnnff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gnnff", *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=600)


def test_simulate_ligand_in_water(tmp_path):
    run = _gnnff("simulate", str(ASPIRIN), "-o", "md", "--ns", "0.0004", "--equilibration-ps", "0.2",
                 "--report-ps", "0.1", "--platform", "CPU", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "ns/day" in run.stdout
    out = tmp_path / "md"
    assert {p.name for p in out.iterdir()} == {"system.xml", "start.pdb", "trajectory.dcd", "log.csv",
                                             "final.pdb", "summary.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["solvent"] == "water" and summary["platform"] == "CPU" and summary["ns_per_day"] > 0
    assert summary["steps"] == 300  # 0.2 ps + 0.4 ps at 2 fs
    with open(out / "log.csv") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 1 + 6 and "Box Volume (nm^3)" in rows[0][6]
    system = openmm.XmlSerializer.deserialize((out / "system.xml").read_text())
    forces = {type(f).__name__ for f in system.getForces()}
    assert {"NonbondedForce", "MonteCarloBarostat", "PeriodicTorsionForce"} <= forces
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.PME
    header = (out / "trajectory.dcd").read_bytes()[:100]
    assert header[4:8] == b"CORD" and int.from_bytes(header[8:12], "little") == 6  # 6 frames


def test_simulate_protein_ligand_in_vacuum(tmp_path):
    run = _gnnff("simulate", str(COMPLEX / "tyk2_ligand_jmc30.sdf"), "--protein", str(COMPLEX / "tyk2_protein.pdb"),
                 "--solvent", "vacuum", "--ns", "0.00002", "--equilibration-ps", "0", "--report-ps", "0.01",
                 "--minimize-iterations", "10", "--platform", "CPU", "-o", "complex", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "complex" / "summary.json").read_text())
    assert summary["atoms"] == 4670 + 37


def test_blow_up_stops_with_one_line_error(tmp_path):
    run = _gnnff("simulate", str(ASPIRIN), "--solvent", "vacuum", "--timestep", "40", "--ns", "0.02",
                 "--equilibration-ps", "0", "--report-ps", "0.2", "-o", "md", cwd=tmp_path)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("gnnff: error:")]
    assert len(errors) == 1 and "blew up at step" in errors[0] and "--timestep" in errors[0], run.stderr
    assert not (tmp_path / "md" / "summary.json").exists()


def test_simulate_says_each_stage_and_refuses_an_existing_run(tmp_path):
    args = ("simulate", "CCO", "--solvent", "vacuum", "--ns", "0.0002", "--equilibration-ps", "0",
            "--report-ps", "0.1", "--minimize-iterations", "25", "--platform", "CPU")
    first = _gnnff(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "CCO-md"  # the default folder is named after the SMILES
    assert (out / "summary.json").is_file()
    stages = [line for line in first.stderr.splitlines() if line.startswith("gnnff simulate: ")]
    assert [s.split(": ", 1)[1].split(" ")[0] for s in stages] == ["parametrizing", "building", "minimising", "MD:"]
    assert "at most 25 iterations" in first.stderr and "minimise" in first.stderr
    assert "\r" not in first.stderr  # no terminal: progress as plain lines, not a carriage-return blob
    assert re.search(r"^md: 100/100 step \(100 %\) in ", first.stderr, re.MULTILINE), first.stderr
    again = _gnnff(*args, cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"gnnff: error: CCO-md/ already holds a run ({', '.join(RUN_FILES)}); choose another -o folder or "
        "pass --overwrite to replace it")
    (out / "trajectory.dcd").write_bytes(b"stale")
    replaced = _gnnff(*args, "--overwrite", "-q", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert "gnnff simulate:" not in replaced.stderr  # -q
    assert (out / "trajectory.dcd").read_bytes()[4:8] == b"CORD"


def test_stability_check_names_the_stretched_bond():
    config = SimulationConfig(solvent="vacuum")
    topology, positions, system = build_simulation_system("CCO", config=config)
    check = _StabilityCheck(system, topology)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    x = np.asarray(positions.value_in_unit(unit.nanometer)).copy()
    context.setPositions(x)
    check(context.getState(getEnergy=True, getPositions=True), 0, 0.0)  # the start is fine
    carbon, oxygen = 1, 2  # C-O bond of ethanol (heavy-atom bonds are not constrained)
    x[oxygen] = x[carbon] + 2.0 * (x[oxygen] - x[carbon])
    context.setPositions(x)
    with pytest.raises(gnnff.GnnffError, match=r"at step 7 .*bond LIG1:C2-O1 is 1\.9\d times"):
        check(context.getState(getEnergy=True, getPositions=True), 7, 0.014)


@pytest.mark.parametrize(("args", "message"), [
    (["--protein", "missing.pdb"], "missing.pdb: cannot read the protein PDB"),
    (["--platform", "Abacus"], "OpenMM platform 'Abacus' is not available here; available: "),
    (["--box", "1.0"], "box_nm must be at least 1.8 nm"),
    (["--ns", "0"], "ns must be positive"),
])
def test_bad_simulation_settings(tmp_path, args, message):
    run = _gnnff("simulate", str(ASPIRIN), "--ns", "0.0001", "-o", "md", *args, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("gnnff: error: ") and message in run.stderr, run.stderr


def test_ligand_without_3d_cannot_go_into_a_protein(tmp_path):
    run = _gnnff("simulate", "CCO", "--protein", str(COMPLEX / "tyk2_protein.pdb"), cwd=tmp_path)
    assert run.returncode == 2 and "needs 3D coordinates in the protein's frame" in run.stderr


def test_example_ligand_in_water(tmp_path, capsys):
    runpy.run_path(str(ROOT / "examples" / "ligand-in-water" / "run.py"), run_name="not_main")["main"](
        ["--steps", "10", "--minimize-iterations", "20", "--platform", "CPU", "-o", str(tmp_path / "w")])
    assert "10 steps" in capsys.readouterr().out
    assert (tmp_path / "w" / "final.pdb").stat().st_size > 0


def test_example_protein_ligand(tmp_path, capsys):
    runpy.run_path(str(COMPLEX / "run.py"), run_name="not_main")["main"](
        ["--solvent", "vacuum", "--steps", "4", "--minimize-iterations", "10", "--platform", "CPU",
         "-o", str(tmp_path / "c")])
    assert "4707 atoms (vacuum), 4 steps" in capsys.readouterr().out
    assert (tmp_path / "c" / "complex.pdb").stat().st_size > 0
