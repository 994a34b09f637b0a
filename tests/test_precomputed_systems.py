"""Precomputed Systems as a benchmark force field (``systems:DIR``): another force field's
tools (e.g. benchmarks/peers/garnet_systems.py, in Garnet's own venv) write one OpenMM System
per exported item, and the torsion-drive and industry benchmarks read them by id.

gnnff-v1's own Systems stand in for the peer's here, so the route is checked against the
direct one without the peer installed."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import openmm
import pytest
from conftest import SHARED_SDF, load_script
from rdkit import Chem

from gnnff.chem.molecule import mol_from_mapped_smiles
from gnnff.errors import ModelError, ParametrizationError
from gnnff.sources.models import get_model
from gnnff.train.benchmark import (
    BenchmarkMolecule,
    SystemFolder,
    read_benchmark_sdf,
    run_protocol,
    system_folder,
    write_items,
)

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCHMARKS / "gas_phase" / "torsion_drives.py", "torsion_drives")


@pytest.fixture(scope="module")
def peer():
    return load_script(BENCHMARKS / "peers" / "garnet_systems.py", "garnet_systems")


def _drive(bench, smiles: str, ident: str):
    """A 6-point drive of ``smiles``' first rotatable torsion (ETKDG geometry turned rigidly); energies zero."""
    import gnnff
    from gnnff.chem.molecule import mapped_smiles, positions_nm, with_conformer
    from gnnff.train.scan import moving_atoms, rotatable_torsions, set_dihedral

    mol = with_conformer(gnnff.load_molecule(smiles))
    torsion = rotatable_torsions(mol)[0]
    targets = np.arange(-180.0, 180.0, 60.0)
    x0 = positions_nm(mol)[0]
    frames = np.array([set_dihedral(x0, torsion, moving_atoms(mol, torsion), t) for t in targets], dtype=np.float32)
    return bench.Drive(ident, mapped_smiles(mol), torsion, "toy", targets, targets.copy(), np.zeros(len(targets)),
                       frames, None, {})


def _peer_stand_in(items_file: Path, folder: Path, model: str = "gnnff-v1") -> None:
    """What a peer's script does with exported items, done with a gnnff model: ``folder/<id>.xml``."""
    import gnnff

    folder.mkdir(parents=True, exist_ok=True)
    for item in json.loads(items_file.read_text()):
        mol = mol_from_mapped_smiles(item["mapped_smiles"], item["id"])
        system = gnnff.parametrize(mol, model=model)
        (folder / f"{item['id']}.xml").write_text(openmm.XmlSerializer.serialize(system))


def test_drive_benchmark_reads_exported_systems_and_matches_the_direct_route(bench, tmp_path, capsys):
    drives_dir = tmp_path / "drives"
    drives_dir.mkdir()
    for d in (_drive(bench, "CCOC", "t1"), _drive(bench, "CC(=O)Nc1ccccc1", "t2")):
        bench.write_drive(drives_dir / f"{d.id}.json.gz", d)
    items = tmp_path / "items.json"
    assert bench.main(["--export-items", str(items), "--drives", str(drives_dir)]) == 0
    assert [i["id"] for i in json.loads(items.read_text())] == ["t1", "t2"]
    _peer_stand_in(items, tmp_path / "peer")
    out = tmp_path / "out"
    assert bench.main(["--force-field", f"systems:{tmp_path / 'peer'}", "--force-field", "gnnff-v1",
                       "--baseline", "gnnff-v1", "--drives", str(drives_dir), "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["force_fields"] == ["peer", "gnnff-v1"] and summary["baseline"] == "gnnff-v1"
    peer_rmse, direct = summary["per_drive_rmse_kcal_mol"]["peer"], summary["per_drive_rmse_kcal_mol"]["gnnff-v1"]
    assert set(peer_rmse) == {"t1", "t2"}
    for i in direct:
        assert peer_rmse[i] == pytest.approx(direct[i], abs=1e-4)
    assert summary["summary"]["peer"]["all"]["vs_baseline"]["ratio"] == pytest.approx(1.0, abs=1e-3)
    # the profiles themselves, not only their RMSEs
    drive = bench.read_drive(drives_dir / "t2.json.gz")
    np.testing.assert_allclose(bench.mm_energies(SystemFolder(tmp_path / "peer"), drive),
                               bench.mm_energies(bench.source_of("gnnff-v1"), drive), atol=1e-3)


def test_a_missing_system_is_one_line_naming_the_id_and_what_to_do(bench, tmp_path):
    mol = mol_from_mapped_smiles("[C:1]([O:2][H:6])([H:3])([H:4])[H:5]", "methanol")
    with pytest.raises(ParametrizationError, match=r"^td999: no System .*td999\.xml; export the items "
                                                   r"\(--export-items FILE\) and run") as info:
        SystemFolder(tmp_path).system("td999", mol)
    assert "\n" not in str(info.value)
    (tmp_path / "errors.json").write_text(json.dumps({"td999": "ValueError: element Xx not supported"}))
    with pytest.raises(ParametrizationError, match="td999: .*its maker failed: ValueError: element Xx"):
        SystemFolder(tmp_path).system("td999", mol)
    # in the drive benchmark: that drive's error, the others go on
    drive = _drive(bench, "CCOC", "td999")
    assert "td999: no System" in bench._one((f"systems:{tmp_path}", drive))[1]
    with pytest.raises(ParametrizationError, match="nowhere: .* is not a folder; give systems:DIR"):
        system_folder(f"systems:{tmp_path / 'nowhere'}")


def test_a_system_in_another_atom_order_is_refused(tmp_path):
    import gnnff

    ethanol = mol_from_mapped_smiles("[C:1]([C:2]([O:3][H:9])([H:7])[H:8])([H:4])([H:5])[H:6]", "ethanol")
    (tmp_path / "e.xml").write_text(openmm.XmlSerializer.serialize(gnnff.parametrize(ethanol)))
    assert SystemFolder(tmp_path).system("e", ethanol).getNumParticles() == 9
    swapped = Chem.RenumberAtoms(ethanol, [1, 0, 2, 3, 4, 5, 6, 7, 8])  # same elements, other bonds
    with pytest.raises(ParametrizationError, match="e .*bonds differ.*not the exported mapped SMILES' order"):
        SystemFolder(tmp_path).system("e", swapped)
    oxygen_first = Chem.RenumberAtoms(ethanol, [2, 0, 1, 3, 4, 5, 6, 7, 8])
    with pytest.raises(ParametrizationError, match="particle 0 has mass 12.0.* atom 0 is O"):
        SystemFolder(tmp_path).system("e", oxygen_first)
    (tmp_path / "bad.xml").write_text("<System")
    with pytest.raises(ParametrizationError, match="bad: .*bad.xml is not an OpenMM System XML"):
        SystemFolder(tmp_path).system("bad", ethanol)


def test_harness_takes_systems_only_where_asked(tmp_path):
    harness = load_script(BENCHMARKS / "harness.py", "harness")
    (tmp_path / "garnet").mkdir()
    sources = harness.force_fields([f"systems:{tmp_path / 'garnet'}", "gnnff-v1"], systems=True)
    assert list(sources) == ["garnet", "gnnff-v1"] and isinstance(sources["garnet"], SystemFolder)
    with pytest.raises(ModelError, match="systems:DIR.* taken by gas_phase/industry.py"):
        harness.force_fields([f"systems:{tmp_path / 'garnet'}"])


def _bonds(mol: Chem.Mol) -> set[tuple[frozenset, float]]:
    return {(frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())), b.GetBondTypeAsDouble()) for b in mol.GetBonds()}


@pytest.mark.skipif(not SHARED_SDF.is_file(), reason=f"shared industry SDF not found at {SHARED_SDF}")
def test_industry_items_keep_the_sdf_atom_order_and_protocol_matches(tmp_path):
    molecules = read_benchmark_sdf(SHARED_SDF, limit=3)
    write_items(tmp_path / "items.json", [(m.item_id, m.mol) for m in molecules])
    items = json.loads((tmp_path / "items.json").read_text())
    assert [i["id"] for i in items] == [m.record_ids[0] for m in molecules]
    for item, molecule in zip(items, molecules):
        back = mol_from_mapped_smiles(item["mapped_smiles"], item["id"])
        assert [(a.GetAtomicNum(), a.GetFormalCharge()) for a in back.GetAtoms()] == \
               [(a.GetAtomicNum(), a.GetFormalCharge()) for a in molecule.mol.GetAtoms()]
        assert _bonds(back) == _bonds(molecule.mol)
    _peer_stand_in(tmp_path / "items.json", tmp_path / "peer")
    m = molecules[0]
    two = Chem.Mol(m.mol)
    for cid in [c.GetId() for c in two.GetConformers()][2:]:
        two.RemoveConformer(cid)
    m = BenchmarkMolecule(m.key, two, m.qm_energies[:2], m.record_ids[:2])
    via_folder = run_protocol(SystemFolder(tmp_path / "peer"), m)
    direct = run_protocol(get_model("gnnff-v1"), m)
    for a, b in zip(via_folder, direct):
        assert a.record_id == b.record_id
        assert a.rmsd == pytest.approx(b.rmsd, abs=1e-4) and a.tfd == pytest.approx(b.tfd, abs=1e-4)
        assert (math.isnan(a.dde) and math.isnan(b.dde)) or a.dde == pytest.approx(b.dde, abs=1e-3)


def test_peer_script_clamps_linear_angles_and_checks_its_items(peer, tmp_path):
    system = openmm.System()
    for _ in range(3):
        system.addParticle(12.0)
    angles = openmm.HarmonicAngleForce()
    angles.addAngle(0, 1, 2, 3.1416, 100.0)  # Garnet's float32 pi written with 4 decimals
    angles.addAngle(0, 1, 2, 1.9, 100.0)
    system.addForce(angles)
    assert peer.clamp_angles(system) == 1
    assert angles.getAngleParameters(0)[3].value_in_unit(openmm.unit.radian) == math.pi
    openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
    (tmp_path / "items.json").write_text(json.dumps([{"id": "a/b", "mapped_smiles": "[H:1][H:2]"}]))
    with pytest.raises(SystemExit, match="ids must be unique file-name stems"):
        peer.read_items(tmp_path / "items.json")
    (tmp_path / "items.json").write_text(json.dumps({"id": "x"}))
    with pytest.raises(SystemExit, match="not a JSON list .*--export-items"):
        peer.read_items(tmp_path / "items.json")


def test_peer_script_makes_garnet_systems_when_garnet_is_installed(peer, tmp_path):
    if importlib.util.find_spec("garnetff") is None:
        pytest.skip("garnetff is not installed here (it lives in its own venv: see benchmarks/peers/garnet_systems.py)")
    items = [{"id": "acetonitrile", "mapped_smiles": "[C:1]([C:2]#[N:3])([H:4])([H:5])[H:6]"},
             {"id": "uranium", "mapped_smiles": "[U:1]"}]
    (tmp_path / "items.json").write_text(json.dumps(items))
    assert peer.main([str(tmp_path / "items.json"), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "acetonitrile.xml").is_file() and not (tmp_path / "out" / "uranium.xml").exists()
    assert "uranium" in json.loads((tmp_path / "out" / "errors.json").read_text())
