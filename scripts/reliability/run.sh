#!/usr/bin/env bash
# Reliability as figures (issue 18): the mutation check, fault injection and bad inputs at scale, then the summary
# results/reliability.json. Slow (about an hour on 2 cores), so not part of CI's run; see README "Reliability".
set -uo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh test || exit $?
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
status=0
for part in mutations faults bad_inputs; do
    .venv/bin/python "scripts/reliability/$part.py" || status=1
done
.venv/bin/python scripts/reliability/report.py || status=1
exit "$status"
