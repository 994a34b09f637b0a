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


def test_the_default_model_is_gnnff_v1_and_works_offline(tmp_path):
    """The default model comes from the package alone: in a fresh process whose sockets refuse
    to connect or resolve names, with HOME and caches in an empty folder, `gnnff.parametrize`
    (no model named) gives aspirin's System from gnnff-v1."""
    import os
    import subprocess
    import sys

    code = ("import socket\n"
            "def refuse(*args, **kwargs):\n"
            "    raise OSError('network disabled by the test')\n"
            "socket.socket.connect = socket.socket.connect_ex = refuse\n"
            "socket.getaddrinfo = socket.create_connection = refuse\n"
            "import gnnff\n"
            "from gnnff.sources.models import DEFAULT_MODEL\n"
            "system = gnnff.parametrize('CC(=O)Oc1ccccc1C(=O)O')\n"
            "print(DEFAULT_MODEL, system.getNumParticles())\n")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gnnff-v1", "21"]
