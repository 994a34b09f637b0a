"""Training and batched-inference throughput of the network, CPU against GPU, in one short run
(made for a lent GPU machine's few minutes; on a machine without a GPU it measures the CPU).

    python benchmarks/speed/gpu.py [--molecules 200] [--epochs 2] [--threads 2] [--devices cpu cuda]

Training: the gnnff-v1 valence architecture (width 128, depth 4, features v1, MMFF94 reference
charges as in ``benchmarks/training/parallel_training.py``) on the first ``--molecules`` molecules of
../shared/data/industry-benchmark-dev.sdf.gz (every conformer), batches of 32 molecules,
``--epochs`` epochs after one warm-up epoch, on each device: training conformations per
second (the loss's forward, double backward for the forces, Adam step). Inference: the
network's forward (no gradients) over the same molecules in batches of about 512 and 8,192
atoms (features and graphs made beforehand): molecules per second; parameters agree between
the devices to float32 rounding (the largest relative difference is printed). Nothing is
asserted. ``--threads`` sets torch's CPU threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import INDUSTRY_SDF  # noqa: E402


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_rate(config, batches, device: torch.device, epochs: int) -> float:
    """Training conformations per second on ``device`` (after one warm-up epoch)."""
    from gnnff.nn.network import build_network
    from gnnff.train.training import run_epoch

    torch.manual_seed(0)
    network = build_network(config.network).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.optim.learning_rate)
    moved = [b.to(device) for b in batches]
    run_epoch(network, moved, config, optimizer)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        run_epoch(network, moved, config, optimizer)
    _synchronize(device)
    conformations = sum(int(b.energies.shape[0]) for b in batches)
    return epochs * conformations / (time.perf_counter() - start)


def inference_rate(network, graphs, n_molecules: int, device: torch.device, repeat: int = 3):
    """(molecules per second of the forward pass, charges of the last pass) on ``device``."""
    network = network.to(device).eval()
    moved = [g.to(device) for g in graphs]
    with torch.no_grad():
        for g in moved[:2]:
            network(g)
        _synchronize(device)
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            out = [network(g) for g in moved]
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
    return n_molecules / best, torch.cat([p.angles.k.cpu() for p in out])


def graphs_of(mols, topologies, features: str, atoms: int) -> list:
    from gnnff.chem.topology import atom_budget_chunks
    from gnnff.nn.checkpoint import graph

    return [graph(mols[part], topologies[part], features)
            for part in atom_budget_chunks([t.n_atoms for t in topologies], atoms)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from gnnff.nn.devices import resolve_device
    from gnnff.nn.network import build_network
    from gnnff.train.config import load_config
    from gnnff.train.training import make_batch, prepare_data

    devices = []
    for name in args.devices:
        if name.startswith("cuda") and not torch.cuda.is_available():
            print(f"{name}: torch sees no CUDA GPU here; left out")
            continue
        devices.append(resolve_device(name))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs ({args.threads} torch threads), GPU: {gpu}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config({
            "data": [{"path": str(INDUSTRY_SDF), "limit": args.molecules}], "output": str(Path(tmp) / "run"),
            "reference_charges": "mmff94", "reference_cache": str(Path(tmp) / "refs.json"),
            "network": {"width": 128, "depth": 4, "head_width": 128, "head_depth": 2, "features": "v1",
                        "torsion_threshold": 0.8, "linear_angles": True},
            "optim": {"batch_molecules": 32, "learning_rate": 1e-3, "threads": args.threads},
            "split": {"validation": 0.0, "test": 0.0, "seed": 0}})
        items = prepare_data(config)["train"]
    order = np.random.default_rng(0).permutation(len(items))
    batches = [make_batch([items[i] for i in order[k:k + 32]], features="v1") for k in range(0, len(order), 32)]
    conformations = sum(int(b.energies.shape[0]) for b in batches)
    print(f"training: {len(items)} molecules, {conformations} conformations, {len(batches)} batches of 32 molecules")
    for device in devices:
        rate = training_rate(config, batches, device, args.epochs)
        print(f"  {str(device):8s} {rate:10.0f} conformations/s")
    mols = [d.mol for d, _ in items]
    topologies = [d.topology for d, _ in items]
    torch.manual_seed(0)
    network = build_network(config.network)
    print(f"inference (network forward, no gradients): {len(mols)} molecules, "
          f"{sum(t.n_atoms for t in topologies)} atoms")
    for atoms in (512, 8192):
        graphs = graphs_of(mols, topologies, "v1", atoms)
        reference = None
        for device in devices:
            rate, values = inference_rate(network, graphs, len(mols), device)
            note = ""
            if reference is None:
                reference = values
            else:
                difference = float(((values - reference).abs() / reference.abs().clamp(min=1e-6)).max())
                note = f"  (angle k vs {devices[0]}: max rel. diff {difference:.1e})"
            print(f"  batches of <= {atoms:5d} atoms ({len(graphs):3d}), {str(device):8s} {rate:10.0f} molecules/s{note}")


if __name__ == "__main__":
    main()
