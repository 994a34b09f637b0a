#!/usr/bin/env bash
# Reproduce the default gnnff model from scratch (2 CPU cores, about 2 h):
#   1. off-equilibrium data (MD frames labelled by ANI-2x / GFN2-xTB) for training molecules
#   2. training on DFT minima + those frames (reference charges cached on first use)
#   3. the OpenFF industry-benchmark protocol on the held-out test molecules
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
python "$here/make_data.py"
gnnff train "$here/train.yaml" --resume
python "$root/benchmarks/gas_phase/industry.py" --model "$root/runs/default/model.pt" \
    --splits "$root/runs/default/splits.json" --part test -o "$root/runs/default/benchmark"
