#!/usr/bin/env bash
# Train a toy gnnff model from a config: label data, train, evaluate, use the model.
#   bash examples/train-from-config/run.sh [WORK]     (WORK: default train-from-config/)
# About a CPU-minute (on 2 cores shared with other jobs: 55 s of CPU time, 4 minutes of wall time).
# The model is a toy (12 molecules, 15 epochs): the point is the workflow. Real recipes:
# recipes/default/ and recipes/v1/ (docs/tutorials/train-from-config.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-train-from-config}"
mkdir -p "$work"
cp "$here/train.yaml" "$work/train.yaml"
# 1. reference data: 2 ETKDG conformers + 2 MD frames each, labelled with GFN2-xTB (resumable)
gnnff data "$here/molecules.smi" -o "$work/data.h5" --labeler gfn2-xtb --etkdg 2 --md-frames 2 --workers 1
# 2. train (outputs in WORK/model/: model.pt, splits.json, metrics.csv, config.json, ...)
gnnff train "$work/train.yaml"
# 3. energies and forces on the held-out test molecules, beside Sage
gnnff evaluate "$work/model/model.pt" "$work/data.h5" --splits "$work/model/splits.json" --part test \
    --baseline-charges mmff94 -o "$work/evaluation"
# 4. the trained model is a model like any other
gnnff parametrize CCO --model "$work/model/model.pt" -o "$work/ethanol.xml"
