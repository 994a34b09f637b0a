#!/usr/bin/env bash
# Bespoke torsions for a small chemical series (aryl methyl ethers), a check on a member
# the fit never saw, and the tuned model in use:
#   bash examples/finetune-series/run.sh [WORK]     (WORK: default finetune-series/)
# About 1.5 CPU-minutes (on 2 cores shared with other jobs: 82 s of CPU time, 6 minutes of
# wall time). GFN2-xTB labels (tblite, nothing to download) at a coarse 60-degree grid keep
# it short; for real work use the defaults (ANI-2x or --labeler b3lyp-d3bj, 15-degree grid,
# 2 samples, 300 steps).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-finetune-series}"
mkdir -p "$work"
# 1. drive each rotatable bond with the labeler and fit the driven torsions' residuals
gnnff finetune "$here/series.smi" -o "$work/series.pt" --labeler gfn2-xtb --step 60 --samples 1 \
    --steps 100 --work "$work/series.finetune" --overwrite -q
# 2. a member outside the fit: the labeler's profile beside the tuned model's
#    (the base model's: the same command with --model gnnff-v1)
gnnff scan 'COc1ccc(Cl)cc1' --torsion 0 1 2 3 --labeler gfn2-xtb --step 60 --model "$work/series.pt" \
    -o "$work/scan-tuned" --overwrite -q
# 3. the tuned model is a model like any other
gnnff parametrize 'COc1ccc(Br)cc1' --model "$work/series.pt" -o "$work/bromoanisole.xml" -q
