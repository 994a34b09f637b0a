"""The held-out torsion-drive benchmark (benchmarks/gas_phase): selection rule, drive file
format, and the benchmark's RMSE on tiny synthetic drives."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from rdkit import Chem

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "benchmarks" / "gas_phase"
SELECTION = ROOT / "benchmarks" / "data" / "torsion-drives-v1.json"
INDUSTRY = ROOT.parent / "shared" / "data" / "industry-benchmark-dev.sdf.gz"


def _script(name: str):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # the scripts import each other as their folder's modules
    return load_script(SCRIPTS / f"{name}.py", name)


@pytest.fixture(scope="module")
def select():
    return _script("make_torsion_drives")


@pytest.fixture(scope="module")
def bench():
    return _script("torsion_drives")


def _industry_head(n: int) -> list[str]:
    """The first ``n`` distinct molecules' mapped SMILES of the shared industry set."""
    found, take = [], False
    with gzip.open(INDUSTRY, "rt") as handle:
        for line in handle:
            if take and line.strip() not in found:
                found.append(line.strip())
                if len(found) == n:
                    break
            take = line.startswith(">") and "<SMILES QCArchive>" in line
    return found


def test_selection_rule_excludes_industry_molecules_and_their_near_analogues(select):
    if not INDUSTRY.is_file():
        pytest.skip(f"shared data not found at {INDUSTRY}")
    industry = _industry_head(20)
    training = select.TrainingSet({"industry-benchmark-dev": set(industry)})
    mol = Chem.MolFromSmiles(industry[3])
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    # the same molecule written another way (no maps, no hydrogens, random atom order) is found
    rewritten = Chem.MolToSmiles(Chem.RemoveHs(mol), doRandom=True)
    assert select.held_out(rewritten, training) == (False, 1.0)
    # so is its salt / charged form: the neutral parent is compared
    assert not select.held_out(rewritten + ".Cl", training)[0]
    ok, nearest = select.held_out("CCCCCCCCCCO", training)  # decanol: nothing like a drug
    assert ok and nearest < 0.9


def test_selection_rule_excludes_a_near_analogue_by_tanimoto(select):
    training = select.TrainingSet({"toy": {"CCCCCCCCCCCCCCCCC(=O)OC"}})
    ok, nearest = select.held_out("CCCCCCCCCCCCCCCCCC(=O)OC", training)  # one CH2 longer
    assert not ok and nearest >= select.SIMILARITY_LIMIT
    assert select.held_out("c1ccccc1OC", training)[0]


def test_committed_selection_levels_sizes_and_torsions(select, bench):
    from gnnff.train.scan import check_torsion

    document = json.loads(SELECTION.read_text())
    drives = document["drives"]
    assert len(drives) >= 40 and len({d["id"] for d in drives}) == len(drives)
    dft = [d for d in drives if d["level"] == "B3LYP-D3BJ/DZVP//ANI-2x"]
    assert len(dft) >= 10 and all(d["heavy_atoms"] <= select.DFT_MAX_HEAVY for d in dft)
    held = set((ROOT / "benchmarks" / "data" / "torsion-drives-v1-heldout.smi").read_text().split())
    for d in drives:
        mol = bench.molecule_of(d["mapped_smiles"])
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == d["smiles"] and d["smiles"] in held
        check_torsion(mol, tuple(d["torsion"]), d["id"])
        elements = {a.GetSymbol() for a in mol.GetAtoms()}
        assert d["nearest_training_tanimoto"] < select.SIMILARITY_LIMIT
        if d["level"] == "ANI-1ccx":
            assert elements <= {"H", "C", "N", "O"}
        else:
            assert elements <= {"H", "C", "N", "O", "F", "S", "Cl"}


def _synthetic_drive(bench, smiles: str, ident: str, step: float = 60.0):
    """A drive of the first rotatable torsion of ``smiles``: ETKDG geometry turned rigidly
    to each grid value; energies zero (filled in by the caller)."""
    from gnnff.chem.molecule import positions_nm, with_conformer
    from gnnff.train.scan import moving_atoms, rotatable_torsions, set_dihedral
    import gnnff

    mol = with_conformer(gnnff.load_molecule(smiles))
    torsion = rotatable_torsions(mol)[0]
    targets = np.arange(-180.0, 180.0, step)
    x0 = positions_nm(mol)[0]
    frames = np.array([set_dihedral(x0, torsion, moving_atoms(mol, torsion), t) for t in targets], dtype=np.float32)
    mapped = Chem.Mol(mol)
    for atom in mapped.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    return bench.Drive(ident, Chem.MolToSmiles(mapped), torsion, "toy", targets, targets.copy(), np.zeros(len(targets)),
                       frames, None, {"bond_class": "test"})


def test_drive_file_round_trips(bench, tmp_path):
    drive = _synthetic_drive(bench, "CCOC(=O)c1ccccc1", "t1")
    drive = bench.Drive(**{**drive.__dict__, "energies": np.linspace(-1000.0, -990.0, len(drive.target_deg)),
                           "geometry_energies": np.arange(len(drive.target_deg), dtype=float)})
    bench.write_drive(tmp_path / "t1.json.gz", drive)
    back = bench.read_drive(tmp_path / "t1.json.gz")
    assert (back.id, back.mapped_smiles, back.torsion, back.level, back.meta) == \
           (drive.id, drive.mapped_smiles, drive.torsion, drive.level, drive.meta)
    for name in ("target_deg", "energies", "geometry_energies"):
        np.testing.assert_array_equal(getattr(back, name), getattr(drive, name))
    np.testing.assert_allclose(back.positions_nm, drive.positions_nm, atol=6e-7)
    assert back.positions_nm.dtype == np.float32
    # the mapped SMILES gives the positions' atom order: the stored frames hold the grid's dihedrals
    from gnnff.train.scan import dihedral_deg
    import gnnff

    mol = bench.molecule_of(back.mapped_smiles)
    original = gnnff.load_molecule("CCOC(=O)c1ccccc1")
    assert [a.GetSymbol() for a in mol.GetAtoms()] == [a.GetSymbol() for a in original.GetAtoms()]
    assert {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()} == \
           {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in original.GetBonds()}
    reached = [dihedral_deg(x, back.torsion) for x in back.positions_nm]
    np.testing.assert_allclose(np.cos(np.radians(reached)), np.cos(np.radians(back.target_deg)), atol=1e-4)


def test_aligned_rmse_and_paired_bootstrap(bench):
    assert bench.aligned_rmse([1.0, 2.0, 3.0], [11.0, 12.0, 13.0]) == 0.0
    assert bench.aligned_rmse([0.0, 0.0], [1.0, -1.0]) == pytest.approx(1.0)
    a, b = np.array([1.0, 1.1, 0.9, 1.2]), np.array([2.0, 2.2, 1.8, 2.4])
    p = bench.paired_bootstrap(a, b)
    assert p["ratio"] == pytest.approx(0.5) and p["ratio_ci"][0] == pytest.approx(0.5)
    assert p["difference_ci"][1] < 0 < 1 - p["ratio_ci"][1]
    # the geometry labeler's gap to the reference level, over the drives holding both
    x = np.zeros((3, 2, 3), dtype=np.float32)
    level = np.array([0.0, 4.184, 0.0])
    drives = [bench.Drive("a", "", (0, 1, 2, 3), "dft", np.zeros(3), np.zeros(3), level, x, level + 7.0),
              bench.Drive("b", "", (0, 1, 2, 3), "dft", np.zeros(3), np.zeros(3), level, x, np.zeros(3)),
              bench.Drive("c", "", (0, 1, 2, 3), "ani", np.zeros(3), np.zeros(3), level, x, None)]
    gap = bench.labeler_gap(drives)
    assert gap["drives"] == 2 and gap["per_drive"]["a"] == pytest.approx(0.0, abs=1e-12)
    assert gap["per_drive"]["b"] == pytest.approx(np.sqrt(np.mean((np.array([0, 1, 0]) - 1 / 3) ** 2)))


@pytest.mark.slow
def test_benchmark_scores_zero_against_its_own_profile_and_positive_otherwise(bench, tmp_path):
    drives = [_synthetic_drive(bench, "CCCC", "t1"), _synthetic_drive(bench, "CC(=O)Nc1ccccc1", "t2")]
    from gnnff.sources.models import get_model

    source = get_model("gnnff-v1")
    drives = [bench.Drive(**{**d.__dict__, "energies": bench.mm_energies(source, d)}) for d in drives]
    folder = tmp_path / "drives"
    folder.mkdir()
    for d in drives:
        bench.write_drive(folder / f"{d.id}.json.gz", d)
    code = bench.main(["--force-field", "gnnff-v1", "--force-field", "gnnff-industry-v0", "--baseline",
                       "gnnff-industry-v0", "--drives", str(folder), "-o", str(tmp_path / "out")])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    own, other = summary["per_drive_rmse_kcal_mol"]["gnnff-v1"], summary["per_drive_rmse_kcal_mol"]["gnnff-industry-v0"]
    assert set(own) == set(other) == {"t1", "t2"}
    assert max(own.values()) < 1e-3  # positions rounded to 1e-6 nm in the file: the same minima
    assert min(other.values()) > 0.01
    paired = summary["summary"]["gnnff-v1"]["all"]["vs_baseline"]
    assert paired["ratio"] < 0.1 and paired["difference"] < 0
    assert (tmp_path / "out" / "per_drive.csv").is_file() and (tmp_path / "out" / "torsion_drives.png").is_file()
