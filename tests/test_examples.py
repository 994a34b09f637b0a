"""Every file in examples/ parametrizes, so the README's quickstart cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

import gnnff
from gnnff.chem.molecule import read_records

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.*"))


@pytest.mark.sqm
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_parametrizes(path):
    records = list(read_records(path))
    assert records
    for record in records:
        assert record.error is None, str(record.error)
        result = gnnff.assign_parameters(record.mol, model="sage", charges="am1bcc-fast")
        system = result.to_openmm()
        assert system.getNumParticles() == record.mol.GetNumAtoms()
        assert abs(result.parameters.nonbonded.charge.sum().item() - result.topology.net_charge) < 1e-12
