"""`gnnff models` says what each model is, without loading the OpenFF toolkit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gnnff


def _models_listing() -> dict[str, dict[str, str]]:
    result = subprocess.run([sys.executable, "-m", "gnnff", "models"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    listing: dict[str, dict[str, str]] = {}
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            listing[name] = {"heading": line}
        else:
            key, value = line.strip().split("  ", 1)
            listing[name][key] = value.strip()
    return listing


def test_models_command_describes_each_model():
    import torch
    from rdkit import Chem

    from gnnff.sources.classical import SAGE_ELEMENTS
    from gnnff.sources.models import DEFAULT_MODEL, WEIGHTS_DIR

    listing = _models_listing()
    assert set(listing) == set(gnnff.available_models())
    table = Chem.GetPeriodicTable()
    default = listing[DEFAULT_MODEL]
    path = WEIGHTS_DIR / f"{DEFAULT_MODEL}.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert default["heading"] == f"{DEFAULT_MODEL}  (default)"
    assert default["elements"] == " ".join(table.GetElementSymbol(z) for z in payload["domain"]["elements"])
    assert default["description"].startswith(f"gnnff GNN: message passing width {payload['network']['width']}, "
                                             f"depth {payload['network']['depth']}")
    assert "charge equilibration" in default["charges"]
    n_weights = sum(t.numel() for t in payload["state_dict"].values())
    assert default["size"] == f"{path.stat().st_size / 1e6:.1f} MB, {n_weights:,} weights (float32)"
    assert default["model card"] == str(path.with_suffix(".md")) and Path(default["model card"]).is_file()
    sage = listing["sage"]
    assert sage["description"].startswith("OpenFF Sage 2.2 + AM1-BCC")
    assert sage["elements"].split() == [table.GetElementSymbol(z) for z in sorted(SAGE_ELEMENTS)]
    assert sage["charges"].startswith("am1bcc (default; --charges am1bcc-fast")


def test_models_command_leaves_the_openff_toolkit_unloaded():
    script = ("import sys, contextlib, io\nfrom gnnff.app.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n    code = main(['models'])\n"
              "print(code, 'openff.toolkit' in sys.modules)")  # the toolkit takes seconds to import
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == "0 False", result.stderr


def test_models_details_of_an_unreadable_checkpoint(tmp_path):
    from gnnff.app.commands import models

    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    details = models._checkpoint_details(bad)
    assert details == {"description": f"unreadable checkpoint ({bad}: not a readable gnnff checkpoint "
                                      "(UnpicklingError); the file is corrupted or not a model, copy or "
                                      "train it again)"}
