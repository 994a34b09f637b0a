"""How many labelled molecules gnnff-v1's charges need: its stage 1 (the nonbonded network
alone, with ``recipes/v1/train.yaml``'s network and stage-1 settings) trained on the first N
usable entries of a label file, for each N, and measured against full AM1-BCC on the
committed references of ``benchmarks/condensed/charges.py`` (its 200-molecule draw, never labelled).

    python benchmarks/training/label_curve.py --sizes 1000 2000 4000
    python benchmarks/training/label_curve.py --sizes 8000 --labels recipes/v1/labels.jsonl --threads 2

Per N: training / validation molecules, epochs, minutes, validation charge RMSE against the
labels, and against full AM1-BCC: per-atom RMSE with a 95 % bootstrap interval over
molecules, largest error, slope of q vs q_ref through 0, and the per-atom RMSE on N, S and
P. Reference molecules whose stereo-free SMILES is among the labels are left out (and
counted). Each size trains in OUT/n{N}/ and is not redone (delete the folder to redo);
the table goes to OUT/label_curve.csv and OUT/label_curve.png (with the issue's 0.03 e bar).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, RDLogger
from tqdm import tqdm

from gnnff.chem.molecule import plain_smiles
from gnnff.chem.topology import build_topology
from gnnff.errors import GnnffError
from gnnff.nn.checkpoint import graph
from gnnff.nn.network import NonbondedNetwork
from gnnff.train.config import load_config
from gnnff.train.labels import prepared_from_mapped_smiles, read_labels
from gnnff.train.nonbonded_training import train_nonbonded

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import REFERENCES, ROOT, bootstrap_interval, png, run, write_csv  # noqa: E402

RECIPE = ROOT / "recipes" / "v1" / "train.yaml"
REFERENCES_FILE = REFERENCES / "am1bcc-spice.json.gz"
#: The per-atom RMSE the gnnff-v1 issue asks of the charges (e).
BAR = 0.03


def references(path: Path, labelled: set[str]) -> tuple[list[tuple[Chem.Mol, np.ndarray]], int]:
    """(prepared molecule, full AM1-BCC charges) of each reference not among the labels, and
    how many were left out because they are."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        stored = json.load(handle)["charges"]
    out, overlap = [], 0
    for smiles, entry in stored.items():
        if plain_smiles(smiles) in labelled:
            overlap += 1
            continue
        mol = prepared_from_mapped_smiles(smiles, smiles)
        out.append((mol, np.asarray(entry["charges"], dtype=float)))
    return out, overlap


def charge_errors(network: NonbondedNetwork, molecules: list[tuple[Chem.Mol, np.ndarray]],
                  features: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per molecule: network charges minus the reference, and the atomic numbers."""
    network.eval()
    errors, elements = [], []
    with torch.no_grad():
        for mol, reference in molecules:
            topology = build_topology(mol)
            errors.append(network(graph([mol], [topology], features)).charge.numpy() - reference)
            elements.append(np.asarray(topology.atomic_numbers))
    return errors, elements


def rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def plot(rows: list[dict], path: Path) -> None:
    n = [r["labels"] for r in rows]
    with png(path, dpi=120, figsize=(5.5, 4)) as (fig, ax):
        ax.errorbar(n, [r["rmse"] for r in rows],
                    yerr=[[r["rmse"] - r["rmse_low"] for r in rows], [r["rmse_high"] - r["rmse"] for r in rows]],
                    marker="o", capsize=3, label="stage-1 network vs full AM1-BCC")
        ax.plot(n, [r["validation_rmse"] for r in rows], marker="s", ls="--",
                label="same, vs its labels (validation)")
        ax.axhline(BAR, color="k", lw=0.8, ls=":", label=f"issue bar {BAR} e")
        ax.set_xscale("log")
        ax.set_xlabel("labelled molecules used (training + validation)")
        ax.set_ylabel("per-atom charge RMSE (e)")
        ax.legend(fontsize=8)


def main() -> None:
    RDLogger.DisableLog("rdApp.*")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", required=True, help="numbers of usable label entries")
    parser.add_argument("--labels", default=str(ROOT / "recipes" / "v1" / "labels.jsonl"))
    parser.add_argument("--config", default=str(RECIPE), help="training config giving the network and stage 1")
    parser.add_argument("--references", default=str(REFERENCES_FILE))
    parser.add_argument("--epochs", type=int, help="at most this many epochs (default: the config's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="label-curve")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if config.nonbonded is None or not config.network.separate_nonbonded:
        raise GnnffError(f"{args.config}: no separate nonbonded network and stage 1 (network.nonbonded_width, "
                         "nonbonded:); give a gnnff-v1-style config")
    stage = dataclasses.replace(config.nonbonded, labels=args.labels)
    if args.epochs:
        stage = dataclasses.replace(stage, epochs=args.epochs)
    usable = [e for e in read_labels(args.labels) if "error" not in e]
    if not usable:
        raise GnnffError(f"{args.labels}: no usable label entries; make them with recipes/v1/make_labels.py")
    sizes = sorted(set(args.sizes))
    if sizes[-1] > len(usable):
        raise GnnffError(f"--sizes {sizes[-1]}: {args.labels} has {len(usable)} usable entries; "
                         f"give sizes up to {len(usable)}")
    labelled = {plain_smiles(e["input"]) for e in usable[:sizes[-1]]}
    molecules, overlap = references(Path(args.references), labelled)
    print(f"{len(molecules)} reference molecules ({overlap} left out: among the labels); "
          f"{len(usable)} usable labels in {args.labels}")
    out = Path(args.output)
    rows = []
    network_config = config.network
    for n in sizes:
        torch.manual_seed(args.seed)
        network = NonbondedNetwork(network_config.nonbonded_width, network_config.nonbonded_depth,
                                   network_config.head_width, network_config.head_depth)
        folder = out / f"n{n}"
        folder.mkdir(parents=True, exist_ok=True)
        loaded = (folder / "nonbonded.json").is_file()
        start = time.perf_counter()
        summary = train_nonbonded(network, dataclasses.replace(stage, limit=n), features=network_config.features,
                                  exclude=set(), output=folder, seed=args.seed)
        minutes = (time.perf_counter() - start) / 60
        errors, elements = charge_errors(network, tqdm(molecules, desc=f"references, n={n}", leave=False,
                                                       disable=None), network_config.features)
        value, low, high = bootstrap_interval(errors, rmse)
        flat, z = np.concatenate(errors), np.concatenate(elements)
        reference = np.concatenate([r for _, r in molecules])
        row = {"labels": n, "train": summary["molecules"]["train"], "validation": summary["molecules"]["validation"],
               "epochs": len(summary["epochs"]), "minutes": None if loaded else round(minutes, 1),
               "validation_rmse": summary["best"]["charge_rmse"], "rmse": value, "rmse_low": low, "rmse_high": high,
               "max_abs": float(np.abs(flat).max()),
               "slope": float(np.dot(flat + reference, reference) / np.dot(reference, reference))}
        for symbol, number in (("N", 7), ("S", 16), ("P", 15)):
            row[f"rmse_{symbol}"] = rmse(flat[z == number]) if (z == number).any() else float("nan")
        rows.append(row)
        print(f"n={n}: {row['train']} train / {row['validation']} validation, {row['epochs']} epochs "
              f"({'trained before, loaded' if loaded else f'{minutes:.1f} min'}): validation vs labels "
              f"{row['validation_rmse']:.4f} e; vs full AM1-BCC {value:.4f} [{low:.4f}, {high:.4f}] e, "
              f"max {row['max_abs']:.2f}, slope {row['slope']:.3f}, N {row['rmse_N']:.3f} S {row['rmse_S']:.3f} "
              f"P {row['rmse_P']:.3f}", flush=True)
    write_csv(out / "label_curve.csv", rows)
    plot(rows, out / "label_curve.png")
    print(f"wrote {out / 'label_curve.csv'} and {out / 'label_curve.png'}")


if __name__ == "__main__":
    run(main)
