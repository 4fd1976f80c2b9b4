#!/usr/bin/env bash
# Newcomer command 1: set up .venv and run the main job on the bundled default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pruneseek space tsdsr-24-r50 "$@"
