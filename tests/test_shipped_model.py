"""Models shipped inside the package load as data and parametrize every example."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gnnff
from gnnff.chem.molecule import read_records
from gnnff.sources.models import WEIGHTS_DIR, available_models

SHIPPED = sorted(WEIGHTS_DIR.glob("*.pt"))
EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.*"))


@pytest.mark.skipif(not SHIPPED, reason="no model shipped in gnnff/weights yet")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_loads_as_data_and_parametrizes_examples(path):
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "gnnff-checkpoint"
    assert path.stat().st_size < 10 * 2**20
    assert path.stem in available_models()
    assert (WEIGHTS_DIR / f"{path.stem}.md").is_file(), "every shipped model has a model card"
    for example in EXAMPLES:
        for record in read_records(example):
            result = gnnff.assign_parameters(record.mol, model=path.stem)
            assert result.to_openmm().getNumParticles() == record.mol.GetNumAtoms()
            assert abs(result.parameters.nonbonded.charge.sum().item() - result.topology.net_charge) < 1e-9
