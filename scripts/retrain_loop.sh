#!/usr/bin/env bash
# The whole loop on the bundled model, as the README shows it: export the committed search mask, retrain it
# (stage 1, then stage 2 from the stage-1 result), and measure everything side by side on the held-out set
# (results/retrain-tsdsr-mini.json). Model folders go to runs/loop/ (not committed: weights).
# Usage: bash scripts/retrain_loop.sh [extra args for both retrain runs, e.g. --steps 100]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run=.venv/bin/pruneseek
out=runs/loop
mkdir -p "$out"
$run export --mask results/search/tsdsr-mini-r0.5-tinysr-s0/mask.json --out "$out/pruned" --no-measure --force
$run retrain --from "$out/pruned" --out "$out/stage1" --force --quiet --threads 1 "$@"
$run retrain --from "$out/stage1" --out "$out/stage2" --stage 2 --force --quiet --threads 1 "$@"
$run retrain --from "$out/stage1" --out "$out/stage2-lr1e-4" --stage 2 --lr 1e-4 --force --quiet --threads 1 "$@"
$run bench retrain --model "pruned=$out/pruned" --model "stage1=$out/stage1" --model "stage2=$out/stage2" \
    --model "stage2-lr1e-4=$out/stage2-lr1e-4" --out results/retrain-tsdsr-mini.json
