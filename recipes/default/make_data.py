"""Off-equilibrium training data for the default model (step 1 of recipes/default/run.sh).

Splits the shared DFT set by molecule exactly as train.yaml does (same fractions, seed
and broken-geometry filter), takes training molecules only, and labels MD frames started
from their QM minima: ANI-2x for neutral H C N O S F Cl molecules, GFN2-xTB for the rest
(charged, P, Br, I). Output: ani2x.h5, xtb.h5 beside this file (resumable).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rdkit import Chem

from gnnff.chem.molecule import Record
from gnnff.train.config import load_config
from gnnff.train.data import drop_broken, read_qcarchive_sdf, split_by_molecule
from gnnff.train.generate import SamplingConfig, generate

HERE = Path(__file__).resolve().parent
ANI_ELEMENTS = {1, 6, 7, 8, 9, 16, 17}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-ani", type=int, default=1500)
    parser.add_argument("--max-xtb", type=int, default=300)
    parser.add_argument("--starts", type=int, default=2, help="QM minima per molecule used as MD starts")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = load_config(HERE / "train.yaml")
    sdf = config.data[0]
    data = drop_broken(read_qcarchive_sdf(sdf.path, dataset=sdf.name, limit=sdf.limit))
    fractions = (1.0 - config.split.validation - config.split.test, config.split.validation, config.split.test)
    train, _, _ = split_by_molecule(data, fractions, config.split.seed)
    ani, xtb = [], []
    for d in train:
        mol = Chem.Mol(d.mol)
        mol.RemoveAllConformers()
        for x in d.positions[: args.starts]:
            conformer = Chem.Conformer(mol.GetNumAtoms())
            for i, xyz in enumerate(x * 10.0):  # nm -> angstrom
                conformer.SetAtomPosition(i, xyz.tolist())
            mol.AddConformer(conformer, assignId=True)
        neutral = Chem.GetFormalCharge(mol) == 0
        covered = {a.GetAtomicNum() for a in mol.GetAtoms()} <= ANI_ELEMENTS
        (ani if neutral and covered else xtb).append(Record(len(ani) + len(xtb) + 1, d.key, mol=mol))
    sampling = SamplingConfig(md_frames=6, temperature=400.0, frame_interval_ps=0.25, seed=0)
    for labeler, records, cap, name in (("ani-2x", ani, args.max_ani, "ani2x.h5"),
                                        ("gfn2-xtb", xtb, args.max_xtb, "xtb.h5")):
        if cap == 0:
            continue  # --max-ani 0 / --max-xtb 0: that file is left alone (another run may hold it)
        report = generate(records[:cap], HERE / name, labeler=labeler, sampling=sampling, workers=args.workers)
        print(f"{name}: {len(report['written'])} written, {len(report['skipped'])} already there, "
              f"{len(report['failed'])} failed")


if __name__ == "__main__":
    main()
