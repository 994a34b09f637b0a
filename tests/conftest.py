"""Shared fixtures: small molecules, the shared DFT benchmark subset, OpenMM helpers."""

from __future__ import annotations

import gzip
import importlib.util
import os
import sys
from pathlib import Path

import pytest
from rdkit import Chem

ROOT = Path(__file__).resolve().parents[1]
SHARED_SDF = Path(os.environ.get("GNNFF_SHARED", ROOT.parent / "shared")) / "data" / "industry-benchmark-dev.sdf.gz"

SMALL = {
    "ethanol": "CCO",
    "acetate": "CC(=O)[O-]",
    "methylammonium": "C[NH3+]",
    "glycine_zwitterion": "[NH3+]CC(=O)[O-]",
    "benzene": "c1ccccc1",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "cyclopropane": "C1CC1",
    "cyclobutane": "C1CCC1",
    "nitrobenzene": "c1ccccc1[N+](=O)[O-]",
    "phosphate": "COP(=O)([O-])[O-]",
    "dimethylsulfone": "CS(C)(=O)=O",
    "bromoiodobenzene": "Brc1ccc(I)cc1",
}


def load_script(path: Path, name: str):
    """The module of a script outside the package (``benchmarks/``, ``recipes/``) loaded
    as ``name`` and registered in ``sys.modules`` (dataclasses and pickling need that)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def embedded(smiles: str, seed: int = 7) -> Chem.Mol:
    """RDKit molecule with explicit hydrogens and one ETKDG conformer."""
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    assert AllChem.EmbedMolecule(mol, params) == 0
    return mol


@pytest.fixture(scope="session")
def small_molecules() -> dict[str, Chem.Mol]:
    return {name: embedded(smiles) for name, smiles in SMALL.items()}


def _select_benchmark(n_neutral: int, per_charge: dict[int, int], max_conformers: int) -> list[Chem.Mol]:
    """Unique molecules of the shared set, their first conformers merged into one Mol each."""
    wanted = dict(per_charge)
    wanted[0] = n_neutral
    picked: dict[str, Chem.Mol] = {}
    counts = {q: 0 for q in wanted}
    with gzip.open(SHARED_SDF) as handle:
        for mol in Chem.ForwardSDMolSupplier(handle, removeHs=False):
            if mol is None:
                continue
            key = mol.GetProp("SMILES QCArchive")
            if key in picked:
                if picked[key].GetNumConformers() < max_conformers:
                    picked[key].AddConformer(mol.GetConformer(), assignId=True)
                continue
            q = Chem.GetFormalCharge(mol)
            if counts.get(q, 0) < wanted.get(q, 0):
                counts[q] += 1
                picked[key] = Chem.Mol(mol)
            if counts == wanted and all(m.GetNumConformers() >= max_conformers for m in picked.values()):
                break
    return list(picked.values())


@pytest.fixture(scope="session")
def benchmark_molecules() -> list[Chem.Mol]:
    """40 neutral and 14 charged molecules (+1, -1, +2, -2) of the shared DFT set, 2 conformers max."""
    if not SHARED_SDF.is_file():
        pytest.skip(f"shared data not found at {SHARED_SDF} (set GNNFF_SHARED)")
    return _select_benchmark(40, {1: 5, -1: 5, 2: 2, -2: 2}, max_conformers=2)


#: Elements of the toy checkpoints below (the default model's).
TOY_ELEMENTS = [1, 6, 7, 8, 9, 15, 16, 17, 35, 53]


def toy_checkpoint(path: Path, *, optional_terms: tuple[str, ...] = ("urey_bradleys",), seed: int = 0) -> Path:
    """An untrained small network saved as a checkpoint, with its opt-in terms' heads set to
    give sizeable, atom-dependent parameters (Urey-Bradley k ~ 1e4 kJ/mol/nm^2), so that
    energy and format tests exercise them."""
    import torch

    from gnnff.nn.checkpoint import save_checkpoint
    from gnnff.nn.network import NetworkConfig, build_network

    torch.manual_seed(seed)
    config = NetworkConfig.from_dict({"width": 32, "depth": 2, "head_width": 32,
                                      "optional_terms": list(optional_terms)})
    network = build_network(config)
    with torch.no_grad():
        for name in optional_terms:
            last = network.heads[name].mlp[-1]
            last.weight.normal_(std=0.5)
            last.bias.copy_(torch.tensor([3.0, 0.3]))
    return save_checkpoint(path, network, config, elements=TOY_ELEMENTS)


@pytest.fixture(scope="session")
def urey_bradley_model(tmp_path_factory) -> Path:
    """A toy checkpoint whose network predicts the opt-in Urey-Bradley term."""
    return toy_checkpoint(tmp_path_factory.mktemp("ub") / "ub.pt")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Both precisions, for the numeric tests: torch.float32 (training, inference) and
    torch.float64 (export, reference energies)."""
    import torch

    return getattr(torch, request.param)
