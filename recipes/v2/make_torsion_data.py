"""Torsion-grid training data for gnnff-v2 (experiment E2 of recipes/v2/README.md).

MD frames at 400 K (recipes/default/make_data.py) seldom cross torsion barriers, so the
valence model of gnnff-v1 learned its torsions from the minima and their neighbourhoods.
This script adds torsion grids: for training molecules of the shared DFT set (split by
molecule exactly as recipes/default/train.yaml, so validation and test molecules are never
touched), neutral and of ANI-2x's elements, from each molecule's lowest-energy QM minimum,
up to two rotatable bonds (``gnnff.train.scan.rotatable_torsions``, seeded choice) set to
every ``--step`` degrees and relaxed with Sage + MMFF94 charges with the dihedral restrained,
each frame labelled with ANI-2x energies and forces (``gnnff data --torsion-step``'s
sampling). Output: ``torsions-ani2x.h5`` beside this file (resumable).

    python recipes/v2/make_torsion_data.py [--max 536] [--step 30] [--workers 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rdkit import Chem

from gnnff.chem.molecule import Record
from gnnff.train.config import load_config
from gnnff.train.data import drop_broken, read_qcarchive_sdf, split_by_molecule
from gnnff.train.generate import SamplingConfig, generate

HERE = Path(__file__).resolve().parent
ANI_ELEMENTS = {1, 6, 7, 8, 9, 16, 17}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=536, help="molecules (first of the training split; 536: the recorded run)")
    parser.add_argument("--step", type=float, default=30.0, help="grid spacing, degrees")
    parser.add_argument("--torsions", type=int, default=2, help="rotatable bonds driven per molecule")
    parser.add_argument("--relax-steps", type=int, default=0,
                        help="then relax each frame with ANI-2x for N steps, dihedral restrained (0: the recorded "
                             "E2 data, classical relaxation only)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path, default=HERE / "torsions-ani2x.h5")
    args = parser.parse_args()
    config = load_config(HERE.parent / "default" / "train.yaml")
    sdf = config.data[0]
    data = drop_broken(read_qcarchive_sdf(sdf.path, dataset=sdf.name, limit=sdf.limit))
    fractions = (1.0 - config.split.validation - config.split.test, config.split.validation, config.split.test)
    train, _, _ = split_by_molecule(data, fractions, config.split.seed)
    records = []
    for d in train:
        mol = Chem.Mol(d.mol)
        if Chem.GetFormalCharge(mol) != 0 or not {a.GetAtomicNum() for a in mol.GetAtoms()} <= ANI_ELEMENTS:
            continue
        mol.RemoveAllConformers()
        conformer = Chem.Conformer(mol.GetNumAtoms())
        for i, xyz in enumerate(d.positions[int(np.argmin(d.energies))] * 10.0):  # nm -> angstrom
            conformer.SetAtomPosition(i, xyz.tolist())
        mol.AddConformer(conformer, assignId=True)
        records.append(Record(len(records) + 1, d.key, mol=mol))
    sampling = SamplingConfig(md_frames=0, torsion_step=args.step, max_torsions=args.torsions, seed=0,
                              torsion_relax_steps=args.relax_steps)
    report = generate(records[: args.max], args.output, labeler="ani-2x", sampling=sampling, workers=args.workers)
    print(f"{args.output.name}: {len(report['written'])} written, {len(report['skipped'])} already there, "
          f"{len(report['failed'])} failed")


if __name__ == "__main__":
    main()
