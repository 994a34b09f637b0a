"""Energy + forces per second: gnnff's exported System in OpenMM beside ANI-2x (torchani).

    python benchmarks/speed/ani_speed.py [--seconds 3] [--model NAME|PATH.pt]

For aspirin and ritonavir (50 heavy atoms), on one 3D conformer (the example SDF's;
ETKDG for ritonavir):

- OpenMM, the System of the default model (or ``--model``): ``Context.setPositions`` +
  ``getState(getEnergy=True, getForces=True)``, CPU platform (``--threads``) and
  Reference platform (single-threaded); and, for scale, Verlet MD steps per second
  (100 steps per Python call: forces each step, no per-call overhead);
- ANI-2x, the 8-model ensemble, weights read offline as gnnff's ``ani-2x`` labeler
  does (``GNNFF_ANI2X_DIR``, default ``../shared/models/torchani``): energy + autograd
  forces, float32 (what OpenMM-ML runs) and float64 (what the labeler uses), and the
  first model of the ensemble alone (float32); torch on ``--threads`` threads.

Under CPU contention from other processes, multi-threaded torch slows down by orders of
magnitude (threads spin waiting for each other): compare ``--threads 1`` there.

Each evaluation is repeated for about ``--seconds``; prints evaluations per second and
the ratio of the faster OpenMM platform to each row. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import gnnff

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from harness import ROOT  # noqa: E402

RITONAVIR = ("CC(C)c1nc(CN(C)C(=O)N[C@@H](C(C)C)C(=O)N[C@@H](Cc2ccccc2)C[C@H](O)[C@H](Cc2ccccc2)"
             "NC(=O)OCc2cncs2)cs1")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls of ``fn`` per second, over about ``seconds`` (after three warm-up calls)."""
    for _ in range(3):
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def openmm_rate(system, positions_nm: np.ndarray, platform: str, threads: int, seconds: float) -> float:
    import openmm

    properties = {"Threads": str(threads)} if platform == "CPU" else {}
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform),
                             properties)
    positions = positions_nm.tolist()

    def evaluate():
        context.setPositions(positions)
        return context.getState(getEnergy=True, getForces=True)

    return rate(evaluate, seconds)


def openmm_step_rate(system, positions_nm: np.ndarray, platform: str, threads: int, seconds: float) -> float:
    """Verlet steps per second, 100 steps per Python call (forces every step, no energy)."""
    import openmm

    properties = {"Threads": str(threads)} if platform == "CPU" else {}
    integrator = openmm.VerletIntegrator(0.0005)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)
    context.setPositions(positions_nm.tolist())
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    return 100 * rate(lambda: integrator.step(100), seconds)


def ani_rate(model, atomic_numbers: np.ndarray, positions_nm: np.ndarray, dtype, seconds: float) -> float:
    import torch

    model = model.to(dtype)
    species = torch.as_tensor(atomic_numbers)[None]
    x = torch.as_tensor(positions_nm * 10.0, dtype=dtype)[None]  # nm -> angstrom

    def evaluate():
        xg = x.clone().requires_grad_(True)
        energy = model((species, xg)).energies
        (grad,) = torch.autograd.grad(energy.sum(), xg)
        return energy.item(), grad

    return rate(evaluate, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    parser.add_argument("--model", default=None, help="gnnff model name or .pt (default: the default model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of torch and of OpenMM's CPU platform (default: one per core)")
    args = parser.parse_args()
    import openmm
    import torch

    torch.set_num_threads(args.threads)

    from gnnff.train.labelers import ANI2xLabeler

    ani = ANI2xLabeler().model
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.threads} thread(s) for torch "
          f"and OpenMM {openmm.__version__}'s CPU platform")
    molecules = {"aspirin": str(ROOT / "examples" / "aspirin.sdf"), "ritonavir": RITONAVIR}
    print(f"{'molecule':10s} {'atoms':>5s} {'engine':40s} {'evals/s':>10s} {'best OpenMM / this':>18s}")
    for name, source in molecules.items():
        mol = gnnff.chem.molecule.with_conformer(gnnff.load_molecule(source, name=name))
        x = gnnff.chem.molecule.positions_nm(mol)[0]
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
        system = gnnff.parametrize(mol, model=args.model)
        rows = [("OpenMM CPU, gnnff System", openmm_rate(system, x, "CPU", args.threads, args.seconds)),
                ("OpenMM Reference, gnnff System", openmm_rate(system, x, "Reference", 1, args.seconds)),
                ("  OpenMM CPU, MD steps (forces only)", openmm_step_rate(system, x, "CPU", args.threads, args.seconds)),
                ("  OpenMM Reference, MD steps (forces only)",
                 openmm_step_rate(system, x, "Reference", 1, args.seconds)),
                ("ANI-2x ensemble (8 models), float32", ani_rate(ani, z, x, torch.float32, args.seconds)),
                ("ANI-2x ensemble (8 models), float64", ani_rate(ani, z, x, torch.float64, args.seconds))]
        ani.set_active_members([0])
        rows.append(("ANI-2x one model, float32", ani_rate(ani, z, x, torch.float32, args.seconds)))
        ani.set_active_members(list(range(8)))
        best = max(rows[0][1], rows[1][1])
        for label, r in rows:
            print(f"{name:10s} {len(z):5d} {label:40s} {r:10.1f} {best / r:18.0f}", flush=True)
    print("target: OpenMM / ANI-2x >= 1,000x")


if __name__ == "__main__":
    main()
