"""Time the chain molecule -> topology -> parameters -> OpenMM System.

Prints a table; nothing is asserted. Run: python benchmarks/speed/parametrize_speed.py
"""

from __future__ import annotations

import argparse
import resource
import time

from rdkit import Chem

import gnnff
from gnnff.mm.export import to_openmm

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def _zero_parameters(top):
    import torch

    from gnnff.schema import REQUIRED_TERMS, ForceFieldParameters

    counts = top.counts()
    return ForceFieldParameters(**{
        term.name: term.parameters(**{
            f.name: torch.zeros((counts[term.name],) + ((len(term.periodicities),) if f.metadata["periodic"] else ()),
                                dtype=torch.float64)
            for f in term.fields()})
        for term in REQUIRED_TERMS})


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    aspirin = gnnff.load_molecule(ASPIRIN)
    gnnff.parametrize(aspirin, model="sage", charges="mmff94")  # warm-up: loads Sage once
    print(f"{'what':58s} {'seconds':>10s}")
    for charges in ("mmff94", "am1bcc-fast", "am1bcc"):
        t = best_of(lambda: gnnff.parametrize(aspirin, model="sage", charges=charges), 1 if charges == "am1bcc" else args.repeat)
        print(f"{'aspirin, Sage + ' + charges + ' charges, in-process':58s} {t:10.3f}")
    for residues in (30, 300, 600):
        sequence = ("ACDEFGHIKLMNPQRSTVWY" * 50)[:residues]
        mol = gnnff.load_molecule(Chem.AddHs(Chem.MolFromSequence(sequence)))
        t_top = best_of(lambda: gnnff.build_topology(mol), args.repeat)
        top = gnnff.build_topology(mol)
        zeros = _zero_parameters(top)
        t_export = best_of(lambda: to_openmm(top, zeros), args.repeat)
        label = f"peptide {residues} res ({mol.GetNumAtoms()} atoms)"
        print(f"{label + ': topology':58s} {t_top:10.3f}")
        print(f"{label + ': export to openmm.System':58s} {t_export:10.3f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak resident memory of this process (MB)':58s} {peak:10.0f}")


if __name__ == "__main__":
    main()
