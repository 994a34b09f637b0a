#!/usr/bin/env bash
# Reproduce gnnff-v1 from scratch (2 CPU cores). Label caches are built once and resume:
#   1. nonbonded labels (am1bcc-mmff charges + Sage LJ; hours, resumable, --limit to cap)
#   2. off-equilibrium data: MD frames of training molecules (ANI-2x / GFN2-xTB) and
#      GFN2-xTB data of iodinated SPICE molecules
#   3. training: stage 1 (charges, LJ), stage 2 (valence) in one `gnnff train`, then two
#      short fine-tunes that thin the proper torsions (sparse.yaml, sparse2.yaml)
#   4. the OpenFF industry-benchmark protocol on the held-out test molecules
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
python "$here/make_labels.py"
python "$root/recipes/default/make_data.py"
gnnff data "$here/iodine-train.smi" -o "$here/iodine-xtb.h5" --labeler gfn2-xtb --etkdg 2 --md-frames 6 \
    --temperature 400 --workers 2
gnnff train "$here/train.yaml" --resume --nproc 2  # data-parallel stage 2 (stage 1 on rank 0)
gnnff train "$here/sparse.yaml" --resume --nproc 2     # propers limited to n = 1..3
gnnff train "$here/sparse2.yaml" --resume --nproc 2    # higher torsion threshold
python "$root/benchmarks/industry.py" --model "$root/runs/v1-sparse2/model.pt" \
    --splits "$root/runs/v1/splits.json" --part test -o "$root/runs/v1-sparse2/benchmark"
