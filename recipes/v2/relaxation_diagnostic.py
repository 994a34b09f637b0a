"""Where a force field's conformer-energy error comes from: the energies at the QM minima, or
the minimisation away from them.

For the molecules of one part of a training split, each force field's ddE (each conformer
against the molecule's lowest-QM conformer, the industry protocol's measure) is computed twice:
at the QM geometries (single points) and after the protocol's minimisation (OpenMM Reference,
L-BFGS as ``benchmarks/gas_phase/industry.py``). A force field whose error grows on
minimisation has minima away from QM's along soft coordinates (the loss.relaxed_energy term of
``gnnff train`` targets that); one whose error is already there at the QM geometries needs
better energies.

    python recipes/v2/relaxation_diagnostic.py --splits runs/industry-splits.json --part test \\
        --molecules 150 --force-field gnnff-v1 --force-field sage-2.3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import openmm
from openmm import unit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from harness import INDUSTRY_SDF, force_fields

from gnnff.threads import serial_numerics
from gnnff.train.benchmark import (
    ANGSTROM_TO_NM,
    KJ_TO_KCAL,
    _minimise,
    build_topology,
    read_benchmark_sdf,
    to_openmm,
)


def errors(source, molecules) -> tuple[np.ndarray, np.ndarray]:
    """ddE errors (kcal/mol) at the QM geometries and after minimisation, reference conformers left out."""
    single, relaxed = [], []
    for m in molecules:
        topology = build_topology(m.mol)
        system = to_openmm(topology, source.parameters(m.mol, topology))
        context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
        at_qm, minimised = [], []
        for conformer in m.mol.GetConformers():
            x = conformer.GetPositions() * ANGSTROM_TO_NM
            context.setPositions(x)
            at_qm.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                         * KJ_TO_KCAL)
            minimised.append(_minimise(system, x)[1])
        ref = int(np.argmin(m.qm_energies))
        qm = m.qm_energies - m.qm_energies[ref]
        for values, out in ((np.array(at_qm), single), (np.array(minimised), relaxed)):
            out.extend(np.delete((values - values[ref]) - qm, ref))
    return np.array(single), np.array(relaxed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force-field", action="append", required=True, help="model name, checkpoint or sage-2.3")
    parser.add_argument("--splits", required=True, help="a training run's splits.json")
    parser.add_argument("--part", default="test")
    parser.add_argument("--molecules", type=int, default=150, help="first N molecules of the part (SDF order)")
    args = parser.parse_args()
    keys = set(json.loads(Path(args.splits).read_text())[args.part])
    molecules = read_benchmark_sdf(INDUSTRY_SDF, keys=keys)[: args.molecules]
    print(f"{len(molecules)} molecules of part '{args.part}'", flush=True)
    with serial_numerics():
        for name, source in force_fields(args.force_field).items():
            start = time.perf_counter()
            single, relaxed = errors(source, molecules)
            rmse = lambda x: float(np.sqrt(np.mean(x**2)))
            print(f"{name}: {len(single)} conformers, ddE RMSE at the QM geometries {rmse(single):.2f}, "
                  f"after minimisation {rmse(relaxed):.2f} kcal/mol ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
