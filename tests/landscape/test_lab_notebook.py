"""notebooks/landscape_lab.ipynb runs end to end on a tiny sweep (PRUNESEEK_NOTEBOOK_QUICK=1).

Executed with nbclient when it (and a Jupyter kernel) is importable, otherwise by exec()-ing the code
cells in order in one namespace, which is what a kernel would do with them.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "landscape_lab.ipynb"


def _has_nbclient() -> bool:
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError:
        return False
    return True


def _run_with_kernel() -> str:
    """Execute the notebook with a Jupyter kernel; everything its cells printed."""
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _run_by_exec() -> str:
    """Execute the code cells in order in one namespace, as a kernel would; everything they printed."""
    import matplotlib

    matplotlib.use("Agg")
    nb = json.loads(NOTEBOOK.read_text())
    namespace: dict = {"__name__": "__notebook__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[cell {i}]", "exec"), namespace)
    return printed.getvalue()


def test_notebook_runs_a_quick_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("PRUNESEEK_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    text = _run_with_kernel() if _has_nbclient() else _run_by_exec()
    # the same checks whichever way it ran: what the notebook printed, and what it wrote
    assert "4 seeds per family" in text
    findings = [line for line in text.splitlines() if " vs " in line and " -> " in line]
    assert findings and all("tinyfusion" in line or "tinysr-next-option" in line for line in findings)
    data = json.loads((tmp_path / "landscape-notebook.json").read_text())
    assert data["seeds"] == 4 and data["space"]["layers"] == 8 and set(data["results"]) == {
        "planted-inside", "planted-outside-1-transfer", "planted-outside-far", "random-quadratic"}
    assert (tmp_path / "landscape-notebook.png").exists()
