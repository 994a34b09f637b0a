"""Torsion drives (``gnnff scan``): the driven dihedral lands on the grid, the reported
energy is the model's own at the optimised geometry, bad torsions are refused by name, the CLI writes its files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import gnnff
from gnnff.chem.molecule import positions_nm, with_conformer
from gnnff.errors import InputError, ParametrizationError
from gnnff.train.scan import (Atoms, check_torsion, constrained_minimise, dihedral_deg, drive, mm_profile,
                              moving_atoms, set_dihedral, system_energy)

from conftest import ROOT


@pytest.fixture(scope="module")
def butane():
    result = gnnff.assign_parameters("CCCC")
    mol = with_conformer(result.mol)
    system = result.to_openmm()
    return mol, positions_nm(mol)[0], system_energy(system), system


def test_drive_lands_on_the_grid_and_reports_the_energy_at_the_optimised_geometry(butane):
    mol, x0, energy, system = butane
    torsion = check_torsion(mol, (0, 1, 2, 3))
    points = drive(energy, Atoms.of(mol), x0, torsion, moving_atoms(mol, torsion), step=60.0)
    assert [p.target_deg for p in points] == [-180.0, -120.0, -60.0, 0.0, 60.0, 120.0]
    for p in points:
        assert abs((p.dihedral_deg - p.target_deg + 180.0) % 360.0 - 180.0) < 0.05, p
        assert dihedral_deg(p.positions, torsion) == pytest.approx(p.dihedral_deg)
        assert p.energy == pytest.approx(energy(p.positions)[0], abs=1e-6)  # no restraint energy in it
    e = {p.target_deg: p.energy for p in points}
    assert min(e, key=e.get) == -180.0 and max(e, key=e.get) == 0.0  # anti lowest, syn highest
    assert e[60.0] == pytest.approx(e[-60.0], abs=0.05)  # the two gauche minima
    # the same System's MM profile (OpenMM, restrained) on these geometries gives the same
    # energies and dihedrals: the restraint holds the grid value and is not in the energy
    again = mm_profile(system, points, torsion)
    np.testing.assert_allclose([p.energy for p in again], [p.energy for p in points], atol=0.05)
    for p in again:
        assert abs((p.dihedral_deg - p.target_deg + 180.0) % 360.0 - 180.0) < 0.05, p
        assert p.energy == pytest.approx(energy(p.positions)[0], abs=1e-6)


def _off_dihedral_force(energy, x, torsion) -> float:
    """Largest force component left after removing the part along the dihedral's gradient."""
    import torch

    from gnnff.mm.energy import dihedrals

    xt = torch.as_tensor(x[None]).requires_grad_(True)
    (g,) = torch.autograd.grad(dihedrals(xt, *(torch.tensor([a]) for a in torsion))[0, 0], xt)
    g = g[0].numpy().ravel()
    f = energy(x)[1].ravel()
    return float(np.abs(f - (f @ g) / (g @ g) * g).max())


def test_constrained_minimum_leaves_force_only_along_the_dihedral(butane):
    mol, x0, energy, system = butane
    torsion = (0, 1, 2, 3)
    start = set_dihedral(x0, torsion, moving_atoms(mol, torsion), 100.0)
    x, e = constrained_minimise(energy, Atoms.of(mol), start, torsion, 100.0)
    assert dihedral_deg(x, torsion) == pytest.approx(100.0, abs=1e-3)
    assert e == pytest.approx(energy(x)[0], abs=1e-6) and e < energy(start)[0]
    # geomeTRIC's convergence (max gradient 4.5e-4 hartree/bohr) is 22 kJ/mol/nm
    assert _off_dihedral_force(energy, x, torsion) < 22.0 < _off_dihedral_force(energy, start, torsion)


def test_without_a_torsion_the_minimisation_is_free_and_finds_the_anti_minimum(butane):
    mol, x0, energy, system = butane
    torsion = (0, 1, 2, 3)
    start = set_dihedral(x0, torsion, moving_atoms(mol, torsion), 150.0)
    x, e = constrained_minimise(energy, Atoms.of(mol), start, None, None)
    assert abs(dihedral_deg(x, torsion)) == pytest.approx(180.0, abs=1.0)  # it left 150 degrees for anti
    assert e == pytest.approx(energy(x)[0], abs=1e-6) and e < energy(start)[0]
    assert np.abs(energy(x)[1]).max() < 22.0  # every force component at geomeTRIC's convergence


def test_set_dihedral_turns_only_the_moving_side(butane):
    mol, x0, _, _ = butane
    torsion = (0, 1, 2, 3)
    moving = moving_atoms(mol, torsion)
    assert 2 in moving and 3 in moving and 0 not in moving and 1 not in moving
    x = set_dihedral(x0, torsion, moving, 37.0)
    assert dihedral_deg(x, torsion) == pytest.approx(37.0, abs=1e-9)
    still = np.setdiff1d(np.arange(mol.GetNumAtoms()), moving)
    np.testing.assert_array_equal(x[still], x0[still])
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        assert np.linalg.norm(x[i] - x[j]) == pytest.approx(np.linalg.norm(x0[i] - x0[j]), rel=1e-12)


@pytest.mark.parametrize("smiles, torsion, message", [
    ("CCCC", (0, 1, 3, 2), r"atoms 1 and 3 of torsion \(0, 1, 3, 2\) are not bonded"),
    ("C1CCCCC1", (0, 1, 2, 3), r"central bond 1-2 of torsion .* is in a ring"),
    ("CCCC", (0, 1, 2, 99), r"torsion atom 99 does not exist \(the molecule has atoms 0..13"),
    ("CCCC", (0, 1, 2, 1), r"repeats an atom"),
])
def test_bad_torsions_are_refused_by_name(smiles, torsion, message):
    mol = gnnff.load_molecule(smiles)
    with pytest.raises(InputError, match=message):
        check_torsion(mol, torsion, smiles)


@pytest.mark.slow
def test_cli_scan_with_ani2x_writes_profile_plot_geometries_and_summary(tmp_path):
    if not (ROOT.parent / "shared" / "models" / "torchani" / "ani-2x_8x.info").is_file():
        pytest.skip("ANI-2x weights not found beside the checkout (../shared/models/torchani)")
    run = lambda *a: subprocess.run([sys.executable, "-m", "gnnff", "scan", *a], cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    done = run("CCO", "--torsion", "0", "1", "2", "8", "--step", "120", "-o", "scan", "-q")
    assert done.returncode == 0, done.stderr
    assert "3 points, ani-2x vs gnnff-v1" in done.stdout
    out = tmp_path / "scan"
    assert sorted(p.name for p in out.iterdir()) == ["profile.csv", "profile.png", "scan.sdf", "summary.json"]
    rows = list(csv.DictReader(open(out / "profile.csv")))
    assert [float(r["target_deg"]) for r in rows] == [-120.0, 0.0, 120.0]
    assert min(float(r["reference_kcal_mol"]) for r in rows) == 0.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["max_dihedral_error_deg"] < 0.1 and 0.0 <= summary["rmse_kcal_mol"] < 5.0
    assert sum(1 for line in open(out / "scan.sdf") if line.startswith("$$$$")) == 3
    again = run("CCO", "--torsion", "0", "1", "2", "8", "-o", "scan")
    assert again.returncode == 2 and "a scan is already there" in again.stderr
    bad = run("CCO", "--torsion", "0", "1", "2", "3", "-o", "bad")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "are not bonded" in bad.stderr


def _central_bonds(smiles: str, order=None) -> set[frozenset]:
    from rdkit import Chem

    from gnnff.train.scan import rotatable_torsions

    mol = gnnff.load_molecule(smiles)
    if order is not None:
        mol = gnnff.load_molecule(Chem.RenumberAtoms(mol, order.tolist()))
    torsions = rotatable_torsions(mol)
    for t in torsions:
        check_torsion(mol, t)  # every proposal is drivable
        assert all(mol.GetAtomWithIdx(a).GetAtomicNum() > 1 for a in t)  # heavy outer atoms
    return {frozenset(t[1:3]) for t in torsions}


def test_rotatable_torsions_one_per_symmetry_unique_bond_between_heavy_groups():
    assert _central_bonds("CCCC") == {frozenset({1, 2})}  # the terminal methyl rotors move only hydrogens
    assert _central_bonds("CCO") == set()
    # bibenzyl: the two phenyl-CH2 bonds are equivalent, the CH2-CH2 bond is the other one
    assert _central_bonds("c1ccccc1CCc1ccccc1") == {frozenset({5, 6}), frozenset({6, 7})}
    # aspirin: ester C-O, O-ring, ring-carboxyl (not the acid's O-H, not the acetyl methyl)
    assert _central_bonds("CC(=O)Oc1ccccc1C(=O)O") == {frozenset({1, 3}), frozenset({3, 4}), frozenset({9, 10})}
    assert _central_bonds("c1ccccc1-c1ccccc1") == {frozenset({5, 6})}
    assert _central_bonds("C1CCCCC1") == set()  # ring bonds are not driven
    # a bond to an alkyne carbon has no defined dihedral; the amine N-aryl bonds do
    assert _central_bonds("C#Cc1cccc(NC)c1") == {frozenset({6, 7})}


def test_rotatable_torsions_follow_a_relabelling():
    smiles = "CC(=O)Oc1ccccc1C(=O)O"
    order = np.random.default_rng(2).permutation(21)  # new atom i is old atom order[i]
    mapped = {frozenset(int(order[a]) for a in bond) for bond in _central_bonds(smiles, order)}
    assert mapped == _central_bonds(smiles)


def test_cli_scan_torsion_option_errors(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "gnnff", "scan", *a], cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    for args, message in ((("CCO", "--torsion", "auto"), "no rotatable bond between heavy-atom groups"),
                          (("CCO", "--torsion", "1", "2", "3"), "--torsion takes four atom indices or 'auto'"),
                          (("CCCC", "--torsion", "0", "1", "2", "3", "--labeler", "cmap"), "unknown labeler")):
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


class _Failing:
    """An energy function whose evaluations raise numpy's LinAlgError (as geomeTRIC's
    Hessian eigensolver once did) near a dihedral value, the first ``times`` times there
    (None: always)."""

    def __init__(self, energy, torsion, at_deg, times=None):
        self.energy, self.torsion, self.at, self.times, self.raised = energy, torsion, at_deg, times, 0

    def __call__(self, x):
        near = abs((dihedral_deg(x, self.torsion) - self.at + 180.0) % 360.0 - 180.0) < 1.0
        if near and (self.times is None or self.raised < self.times):
            self.raised += 1
            raise np.linalg.LinAlgError("Eigenvalues did not converge")
        return self.energy(x)


def test_a_numerical_failure_is_retried_and_a_point_failing_once_is_reached_by_the_other_pass(butane):
    mol, x0, energy, system = butane
    torsion = (0, 1, 2, 3)
    moving = moving_atoms(mol, torsion)
    start = set_dihedral(x0, torsion, moving, 100.0)
    flaky = _Failing(energy, torsion, 100.0, times=1)
    x, e = constrained_minimise(flaky, Atoms.of(mol), start, torsion, 100.0)  # the retry succeeds
    assert flaky.raised == 1 and dihedral_deg(x, torsion) == pytest.approx(100.0, abs=1e-3)
    # 120 degrees fails twice (both tries of its first visit): the other pass still reaches it
    points = drive(_Failing(energy, torsion, 120.0, times=2), Atoms.of(mol), x0, torsion, moving, step=60.0)
    assert [p.target_deg for p in points] == [-180.0, -120.0, -60.0, 0.0, 60.0, 120.0]


def test_a_point_failing_in_both_passes_is_a_parametrization_error_naming_it(butane):
    mol, x0, energy, system = butane
    torsion = (0, 1, 2, 3)
    with pytest.raises(ParametrizationError, match="constrained optimisation at 120 degrees did not converge "
                                                   r"\(LinAlgError\)"):
        drive(_Failing(energy, torsion, 120.0), Atoms.of(mol), x0, torsion, moving_atoms(mol, torsion), step=60.0)
