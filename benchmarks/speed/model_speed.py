"""Training throughput, inference time per molecule and peak memory of the GNN.

Prints numbers; nothing is asserted. Run: python benchmarks/speed/model_speed.py [--threads 2]
Uses the first molecules of ../shared/data/industry-benchmark-dev.sdf.gz for training
throughput, and an untrained network of the default size (timing does not depend on
the weights).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem

import gnnff
from gnnff.nn.checkpoint import graph
from gnnff.nn.network import NetworkConfig, build_network
from gnnff.train.config import load_config
from gnnff.train.data import read_qcarchive_sdf
from gnnff.train.training import Metrics, batch_loss, make_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import INDUSTRY_SDF  # noqa: E402

DRUG_50 = ("CC(C)c1nc(CN(C)C(=O)N[C@@H](C(C)C)C(=O)N[C@@H](Cc2ccccc2)C[C@H](O)[C@H](Cc2ccccc2)"
           "NC(=O)OCc2cncs2)cs1")  # ritonavir, 50 heavy atoms


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inference(network, mol, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        top = gnnff.build_topology(mol)
        with torch.no_grad():
            p = network(graph([mol], [top], network.config.features))
        gnnff.to_openmm(top, p)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--molecules", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = NetworkConfig()
    print(f"network {config}, threads {args.threads}")
    net = build_network(config)
    data = read_qcarchive_sdf(INDUSTRY_SDF, limit=args.molecules)
    train_cfg = load_config({"data": [{"path": str(INDUSTRY_SDF)}], "output": "unused"})
    refs = [{f.name: np.zeros(d.mol.GetNumAtoms()) + (0.3 if f.name != "charge" else 0.0)
             for f in gnnff.schema.NONBONDED.fields()} for d in data]
    items = list(zip(data, refs))
    batches = [make_batch(items[i:i + 16]) for i in range(0, len(items), 16)]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    n_conf = sum(d.n_conformations for d in data)
    start = time.perf_counter()
    for batch in batches:
        loss = batch_loss(net, batch, train_cfg, Metrics(), training=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    print(f"training: {len(data)} molecules, {n_conf} conformations, one epoch {seconds:.2f} s "
          f"-> {n_conf / seconds:.0f} conformations/s, {len(data) / seconds:.0f} molecules/s")
    net = net.float().eval()  # as gnnff.nn.checkpoint loads it
    for name, mol in [("aspirin", gnnff.load_molecule("CC(=O)Oc1ccccc1C(=O)O")),
                      ("ritonavir (50 heavy atoms)", gnnff.load_molecule(DRUG_50)),
                      ("peptide 310 residues", gnnff.load_molecule(Chem.AddHs(Chem.MolFromSequence(
                          ("ACDEFGHIKLMNPQRSTVWY" * 20)[:310]))))]:
        t = inference(net, mol)
        print(f"inference + export, {name} ({mol.GetNumAtoms()} atoms): {1000 * t:.1f} ms")
    print(f"peak resident memory: {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
