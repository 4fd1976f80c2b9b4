#!/usr/bin/env bash
# Newcomer command 1: set up .venv and run the main job on the bundled default (tsdsr-mini, the built-in
# photographs, the default strategy) with three seeds and their majority decision; it prints how many layers
# all seeds agree on. Extra arguments go to `pruneseek search`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pruneseek search --model tsdsr --ratio 0.5 --seeds 3 "$@"
