"""Reading molecules from every supported input, and refusing bad ones clearly."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

import gnnff
from gnnff.chem.molecule import read_records
from gnnff.errors import ChemistryError, InputError, ParametrizationError

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parents[1] / "examples"


def _write_sdf(path: Path, mols: list[Chem.Mol]) -> Path:
    writer = Chem.SDWriter(str(path))
    for mol in mols:
        writer.write(mol)
    writer.close()
    return path


def test_multi_record_sdf_keeps_properties(tmp_path, small_molecules):
    mols = []
    for name in ("ethanol", "acetate", "benzene"):
        mol = Chem.Mol(small_molecules[name])
        mol.SetProp("_Name", name)
        mol.SetProp("source", f"test-{name}")
        mols.append(mol)
    records = list(read_records(_write_sdf(tmp_path / "three.sdf", mols)))
    assert [r.index for r in records] == [1, 2, 3]
    assert all(r.error is None for r in records)
    assert [r.mol.GetProp("source") for r in records] == ["test-ethanol", "test-acetate", "test-benzene"]
    assert "three.sdf record 2 ('acetate')" == records[1].label
    assert gnnff.build_topology(records[1].mol).net_charge == -1


def test_gzipped_sdf(tmp_path, small_molecules):
    plain = _write_sdf(tmp_path / "a.sdf", [small_molecules["aspirin"]])
    packed = tmp_path / "a.sdf.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    (record,) = read_records(packed)
    assert record.mol.GetNumAtoms() == small_molecules["aspirin"].GetNumAtoms()


def test_mol2_records_and_charge():
    records = list(read_records(DATA / "ethanol_acetate.mol2"))
    assert [r.label for r in records] == ["ethanol_acetate.mol2 record 1 ('ethanol')",
                                          "ethanol_acetate.mol2 record 2 ('acetate')"]
    assert [Chem.GetFormalCharge(r.mol) for r in records] == [0, -1]
    assert records[0].mol.GetNumConformers() == 1


def test_smiles_gets_hydrogens_and_no_fake_coordinates():
    mol = gnnff.load_molecule("CC(=O)[O-]")
    assert mol.GetNumAtoms() == 7 and mol.GetNumConformers() == 0
    assert gnnff.build_topology(mol).net_charge == -1


def test_smiles_file(tmp_path):
    path = tmp_path / "in.smi"
    path.write_text("# comment\nCCO ethanol\n\nC[NH3+] methylammonium\nC1CC broken\n")
    records = list(read_records(path))
    assert [r.label for r in records] == ["in.smi record 1 ('ethanol')", "in.smi record 2 ('methylammonium')",
                                          "in.smi record 3 ('broken')"]
    assert records[1].mol.GetNumAtoms() == 8
    assert isinstance(records[2].error, InputError)
    assert str(records[2].error) == ("in.smi record 3 ('broken'): RDKit cannot parse SMILES 'C1CC'; check its syntax "
                                     "(brackets, ring-closure digits, element symbols)")
    assert [r.title for r in records] == ["ethanol", "methylammonium", "broken"]


def test_rdkit_and_openff_inputs_agree(small_molecules):
    from openff.toolkit import Molecule

    rdmol = small_molecules["glycine_zwitterion"]
    offmol = Molecule.from_rdkit(rdmol)
    a = gnnff.load_molecule(rdmol)
    b = gnnff.load_molecule(offmol)
    assert Chem.MolToSmiles(a) == Chem.MolToSmiles(b)
    assert [x.GetAtomicNum() for x in a.GetAtoms()] == [x.GetAtomicNum() for x in b.GetAtoms()]
    np.testing.assert_allclose(a.GetConformer().GetPositions(), b.GetConformer().GetPositions(), atol=1e-6)


def test_input_molecule_not_modified(small_molecules):
    mol = small_molecules["aspirin"]
    before = Chem.MolToMolBlock(mol)
    gnnff.parametrize(mol, model="sage", charges="mmff94")
    assert Chem.MolToMolBlock(mol) == before


def test_system_particles_follow_input_order(small_molecules):
    mol = small_molecules["aspirin"]
    order = np.random.default_rng(0).permutation(mol.GetNumAtoms()).tolist()
    permuted = Chem.RenumberAtoms(mol, order)
    system = gnnff.parametrize(permuted, model="sage", charges="mmff94")
    masses = [system.getParticleMass(i)._value for i in range(system.getNumParticles())]
    expected = [a.GetMass() for a in permuted.GetAtoms()]
    np.testing.assert_allclose(masses, expected, rtol=1e-3)


# ---- bad input: one-line messages naming the record and the problem -------------------

def _only_record_error(path: Path):
    (record,) = read_records(path)
    assert record.mol is None
    message = str(record.error)
    assert "\n" not in message
    return record.error


def test_empty_file(tmp_path):
    path = tmp_path / "empty.sdf"
    path.write_text("")
    with pytest.raises(InputError, match=r"empty\.sdf: file is empty"):
        list(read_records(path))


def test_binary_file(tmp_path):
    path = tmp_path / "junk.sdf"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match=r"junk\.sdf: binary data"):
        list(read_records(path))


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.sdf.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"bad\.sdf\.gz: cannot read file"):
        list(read_records(path))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.sdf: no such file"):
        list(read_records(tmp_path / "nothere.sdf"))


def test_unsupported_format(tmp_path):
    path = tmp_path / "mol.xyz"
    path.write_text("1\n\nC 0 0 0\n")
    with pytest.raises(InputError, match=r"unsupported format '\.xyz'; use one of \.sdf"):
        list(read_records(path))


def test_unknown_element(tmp_path, small_molecules):
    block = Chem.MolToMolBlock(small_molecules["ethanol"]).replace(" O  ", " Xx ")
    path = tmp_path / "xx.sdf"
    path.write_text(block + "$$$$\n")
    error = _only_record_error(path)
    assert isinstance(error, InputError)
    assert "xx.sdf record 1" in str(error) and "unknown element 'Xx'" in str(error)


def test_truncated_record_among_good_ones(tmp_path, small_molecules):
    good = Chem.MolToMolBlock(small_molecules["ethanol"])
    bad = "\n".join(good.split("\n")[:7])
    path = tmp_path / "mixed.sdf"
    path.write_text(good + "$$$$\n" + bad + "\n$$$$\n" + good + "$$$$\n")
    records = list(read_records(path))
    assert [r.error is None for r in records] == [True, False, True]
    assert "mixed.sdf record 2" in str(records[1].error)


def test_radical(tmp_path):
    with pytest.raises(ChemistryError, match=r"atom 0 \(C\) has 1 unpaired electron"):
        gnnff.load_molecule("[CH3]")


def test_missing_hydrogens_in_3d_file(tmp_path, small_molecules):
    heavy = Chem.RemoveHs(small_molecules["ethanol"])
    path = _write_sdf(tmp_path / "noh.sdf", [heavy])
    error = _only_record_error(path)
    assert isinstance(error, ChemistryError)
    assert "noh.sdf record 1" in str(error) and "a 3D input must list every hydrogen" in str(error)


def test_element_outside_sage(small_molecules):
    with pytest.raises(ParametrizationError, match=r"atom 0 \(Si\) is an element Sage does not cover"):
        gnnff.parametrize("[SiH4]", model="sage", charges="mmff94")


def test_unknown_model_lists_known():
    with pytest.raises(gnnff.ModelError, match=r"unknown model 'nope'; known models: .*sage"):
        gnnff.parametrize("CCO", model="nope")


def test_unsupported_object():
    with pytest.raises(InputError, match=r"^input of type int: gnnff cannot read a molecule from it; pass an RDKit Mol"):
        gnnff.load_molecule(42)


def test_multi_record_file_to_parametrize_is_refused():
    with pytest.raises(InputError, match=r"holds 2 molecules"):
        gnnff.parametrize(DATA / "ethanol_acetate.mol2")


def test_bonds_in_order_equals_rdkits_bond_list():
    from gnnff.chem.features import bonds_in_order

    mol = gnnff.load_molecule("CC(=O)Oc1ccccc1C(=O)[O-].C[NH3+]")
    assert [b.GetIdx() for b in bonds_in_order(mol)] == list(range(mol.GetNumBonds()))
    assert [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in bonds_in_order(mol)] == [
        (b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]


def test_large_molecules_keep_their_stereo_tags_unperceived():
    """Above STEREO_PERCEPTION_MAX_ATOMS atoms prepare skips RDKit's (quadratic) stereo
    perception; a smaller molecule is perceived (CIP labels set)."""
    from gnnff.chem.molecule import STEREO_PERCEPTION_MAX_ATOMS

    small = gnnff.load_molecule(Chem.MolFromSequence("ACDEF"))
    assert any(a.HasProp("_CIPCode") for a in small.GetAtoms())
    residues = STEREO_PERCEPTION_MAX_ATOMS // 15 + 10
    large = gnnff.load_molecule(Chem.MolFromSequence("ACDEFGHIKLMNPQRSTVWY" * (residues // 20 + 1)))
    assert large.GetNumAtoms() > STEREO_PERCEPTION_MAX_ATOMS
    assert not any(a.HasProp("_CIPCode") for a in large.GetAtoms())
    assert sum(a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED for a in large.GetAtoms()) > 100  # tags kept


def test_large_aromatic_molecules_are_kekulized_system_by_system_to_the_same_bonds(monkeypatch):
    """Above KEKULIZE_BY_SYSTEM_MIN_ATOMS prepare kekulizes each aromatic system alone
    (RDKit's whole-molecule Kekulize is quadratic): every bond type, aromatic flag and
    hydrogen count equals the whole-molecule sanitization's, for aromatic rings of every
    kind (benzene, pyridinium, pyrrole NH, fused, N-oxide, pyridone) in one molecule."""
    import gnnff.chem.molecule as module

    smiles = ("CC(=O)Oc1ccccc1C(=O)O.c1cc[n+](C)cc1.c1ccc2[nH]ccc2c1.[O-][n+]1ccccc1.O=c1cc[nH]cc1."
              "Nc1nc2[nH]cnc2c(=O)[nH]1.c1ccc2ccccc2c1.Cc1ccc(-c2ccccc2)s1")
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))  # aromatic bond types, as SMILES and mol2 give
    monkeypatch.setattr(module, "KEKULIZE_BY_SYSTEM_MIN_ATOMS", 10**9)
    whole = gnnff.load_molecule(mol, name="whole")
    monkeypatch.setattr(module, "KEKULIZE_BY_SYSTEM_MIN_ATOMS", 0)
    calls = []
    original = module._kekulized_by_system
    monkeypatch.setattr(module, "_kekulized_by_system", lambda m: calls.append(1) or original(m))
    by_system = gnnff.load_molecule(mol, name="by system")
    assert calls and len(module._aromatic_systems(mol)) == 9
    assert [b.GetBondType() for b in by_system.GetBonds()] == [b.GetBondType() for b in whole.GetBonds()]
    assert [a.GetIsAromatic() for a in by_system.GetAtoms()] == [a.GetIsAromatic() for a in whole.GetAtoms()]
    assert [a.GetTotalNumHs() for a in by_system.GetAtoms()] == [a.GetTotalNumHs() for a in whole.GetAtoms()]
    assert Chem.MolToSmiles(by_system) == Chem.MolToSmiles(whole)


def test_large_molecule_with_an_impossible_aromatic_ring_gets_the_usual_message(monkeypatch):
    import gnnff.chem.molecule as module

    monkeypatch.setattr(module, "KEKULIZE_BY_SYSTEM_MIN_ATOMS", 0)
    mol = Chem.MolFromSmiles("c1cccc1C", sanitize=False)  # five aromatic carbons: no Kekulé form
    with pytest.raises(ChemistryError, match=r"^cyclopentadienyl: RDKit cannot sanitize the molecule \(.*kekulize"):
        gnnff.load_molecule(mol, name="cyclopentadienyl")
