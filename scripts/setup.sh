#!/usr/bin/env bash
# Set up ./.venv with pruneseek installed (editable) and the extras named in $1 (e.g. "test"),
# pinned by constraints.txt. Re-running is cheap: nothing is reinstalled unless those files changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "pruneseek needs Python >= 3.11; set PYTHON=/path/to/python3.11 and run again" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=".venv/.pruneseek-installed${extras:+-$extras}"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "setting up .venv (pruneseek${extras:+[$extras]}) ..." >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".${extras:+[$extras]}"
echo "$want" > "$stamp"
