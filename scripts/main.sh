#!/usr/bin/env bash
# Newcomer command 1: set up .venv and run the main job on the bundled default (tsdsr-mini, the built-in
# photographs) with three seeds and their majority decision; it prints how many layers all seeds agree on.
# Strategy: tinyfusion, the one the ratio-0.5 comparison supports (results/compare-tsdsr-mini-r0.5.*: the only
# strategy significantly better than random-min there, and the only one that is at every ratio; README
# "Comparing strategies").
# Extra arguments go to `pruneseek search` (e.g. --strategy tinysr).
# One torch thread: the same reduction order on every machine (a learned search is sensitive to the last bit of
# its sums) and no OpenMP stalls on a shared machine; the miniature gains little from more threads.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/pruneseek search --model tsdsr --ratio 0.5 --strategy tinyfusion --seeds 3 --jobs 3 "$@"
