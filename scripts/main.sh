#!/usr/bin/env bash
# Newcomer command 1: set up .venv and run the main job on the bundled default
# (tsdsr-mini, the built-in photographs, the tinysr strategy). Extra arguments go to `pruneseek search`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pruneseek search --model tsdsr --ratio 0.5 "$@"
