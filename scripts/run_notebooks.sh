#!/usr/bin/env bash
# Execute every notebook in notebooks/ in place with a Jupyter kernel (the committed copies carry the
# outputs of the full results in results/). Sets up .venv with the notebooks extra first.
# Usage: scripts/run_notebooks.sh [notebooks/NAME.ipynb ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh notebooks
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
[ "$#" -gt 0 ] || set -- notebooks/*.ipynb
for nb in "$@"; do
    echo "executing $nb" >&2
    MPLBACKEND=module://matplotlib_inline.backend_inline .venv/bin/python - "$nb" <<'PY'
import sys

import nbclient
import nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
tmp = path + ".tmp"
nbformat.write(nb, tmp)
import os

os.replace(tmp, path)
PY
done
