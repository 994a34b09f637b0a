"""Time and peak memory of parametrizing peptides of 500 to 10,000 atoms with the default model.

    python benchmarks/speed/scaling.py [--atoms 500 1000 2500 5000 10000] [--plot scaling.png]

Each size runs in a fresh Python process (so its peak resident memory, the
``getrusage`` high-water mark, belongs to that size alone). A peptide is the sequence
``ACDEFGHIKLMNPQRSTVWY`` repeated, built with ``Chem.MolFromSequence`` + ``AddHs``
(no coordinates: parametrization reads the graph only), residues chosen to come near
the requested atom count. In the child: imports and model load (RSS measured after
them), then ``gnnff.parametrize(mol, model=source)`` timed by stage: reading
(``load_molecule``), topology, network, export to ``openmm.System``. Prints a table
and seconds per 1,000 atoms (linearity); nothing is asserted. The Sage model is not
run here (its SMIRKS matching is far slower on large molecules).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import png  # noqa: E402

SEQUENCE = "ACDEFGHIKLMNPQRSTVWY"
ATOMS_PER_RESIDUE = 16.2  # of the repeated SEQUENCE with hydrogens (5,016 atoms for 310 residues)


def peptide(residues: int):
    from rdkit import Chem

    return Chem.AddHs(Chem.MolFromSequence((SEQUENCE * (residues // len(SEQUENCE) + 1))[:residues]))


def rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(residues: int, threads: int | None) -> dict:
    """Run in a fresh process: parametrize one peptide, return timings and memory."""
    import torch

    import gnnff
    from gnnff.nn.checkpoint import graph

    if threads:
        torch.set_num_threads(threads)
    source = gnnff.get_model()
    raw = peptide(residues)
    rss_before = rss_mb()
    marks = [time.perf_counter()]
    mol = gnnff.load_molecule(raw)
    marks.append(time.perf_counter())
    top = gnnff.build_topology(mol)
    marks.append(time.perf_counter())
    with torch.no_grad():
        params = source.network(graph([mol], [top], source.config.features))
    marks.append(time.perf_counter())
    system = gnnff.to_openmm(top, params)
    marks.append(time.perf_counter())
    stages = [b - a for a, b in itertools.pairwise(marks)]
    start = time.perf_counter()
    check = gnnff.parametrize(raw, model=source)  # the public call, end to end
    public = time.perf_counter() - start
    assert check.getNumParticles() == system.getNumParticles()
    return {"residues": residues, "atoms": mol.GetNumAtoms(), "read": stages[0], "topology": stages[1],
            "network": stages[2], "export": stages[3], "total": sum(stages), "parametrize": public,
            "rss_before_mb": rss_before, "peak_mb": rss_mb(), "threads": torch.get_num_threads()}


def plot(rows: list[dict], path: str) -> None:
    atoms = [r["atoms"] for r in rows]
    with png(path, dpi=120, ncols=2, figsize=(9, 3.5)) as (fig, (ax1, ax2)):
        for key in ("read", "topology", "network", "export", "parametrize"):
            ax1.plot(atoms, [r[key] for r in rows], "o-", label=key)
        ax1.set(xlabel="atoms", ylabel="seconds", title="time")
        ax1.legend(fontsize=8)
        ax2.plot(atoms, [r["peak_mb"] for r in rows], "o-", label="peak RSS")
        ax2.plot(atoms, [r["rss_before_mb"] for r in rows], "o--", label="after imports + model")
        ax2.set(xlabel="atoms", ylabel="MB", title="memory")
        ax2.legend(fontsize=8)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atoms", type=int, nargs="+", default=[500, 1000, 2500, 5000, 10000])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--plot", default=None, help="write a PNG of time and memory against atoms")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads)))
        return
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; one fresh process per size")
    header = (f"{'atoms':>6s} {'res':>4s} {'read s':>7s} {'topol s':>7s} {'network s':>9s} {'export s':>8s} "
              f"{'total s':>7s} {'parametrize s':>13s} {'s/1k atoms':>10s} {'base MB':>7s} {'peak MB':>7s}")
    print(header)
    rows = []
    for target in args.atoms:
        residues = max(1, round(target / ATOMS_PER_RESIDUE))
        command = [sys.executable, __file__, "--child", str(residues)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        print(f"{r['atoms']:6d} {r['residues']:4d} {r['read']:7.3f} {r['topology']:7.3f} {r['network']:9.3f} "
              f"{r['export']:8.3f} {r['total']:7.3f} {r['parametrize']:13.3f} "
              f"{1000 * r['parametrize'] / r['atoms']:10.3f} {r['rss_before_mb']:7.0f} {r['peak_mb']:7.0f}",
              flush=True)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        slope = (b["parametrize"] - a["parametrize"]) / (b["atoms"] - a["atoms"])
        print(f"marginal cost {1000 * slope:.3f} s per 1,000 atoms between {a['atoms']} and {b['atoms']} atoms; "
              f"time ratio {b['parametrize'] / a['parametrize']:.1f} for atom ratio {b['atoms'] / a['atoms']:.1f}")
    print(f"threads {rows[0]['threads']}; targets: 10,000 atoms <= 10 s and <= 2 GB; 100,000 atoms <= 20 s and <= 4 GB")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
