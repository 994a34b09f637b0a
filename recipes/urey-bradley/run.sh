#!/usr/bin/env bash
# Urey-Bradley as an opt-in term: the same fine-tune of gnnff-industry-v0 with and without
# it, then the OpenFF industry-benchmark protocol on the held-out test molecules of each.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
for arm in plain ub; do
    gnnff train "$here/$arm.yaml" --resume
    python "$root/benchmarks/gas_phase/industry.py" --model "$root/runs/urey-bradley/$arm/model.pt" \
        --splits "$root/runs/urey-bradley/$arm/splits.json" --part test \
        -o "$root/runs/urey-bradley/$arm/benchmark"
done
