"""notebooks/landscape_lab.ipynb runs end to end on a tiny sweep (PRUNESEEK_NOTEBOOK_QUICK=1).

Executed with nbclient when it (and a Jupyter kernel) is importable, otherwise by exec()-ing the code
cells in order in one namespace, which is what a kernel would do with them.
"""
from __future__ import annotations

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


def test_notebook_runs_a_quick_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("PRUNESEEK_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    if _has_nbclient():
        import nbclient
        import nbformat

        nb = nbformat.read(NOTEBOOK, as_version=4)
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    else:
        import matplotlib

        matplotlib.use("Agg")
        nb = json.loads(NOTEBOOK.read_text())
        namespace: dict = {"__name__": "__notebook__"}
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                exec(compile(source, f"{NOTEBOOK.name}[cell {i}]", "exec"), namespace)
        assert namespace["summary"]["seeds"] == 4
        assert any("tinyfusion" in line for line in namespace["findings"])
    data = json.loads((tmp_path / "landscape-notebook.json").read_text())
    assert data["space"]["layers"] == 8 and set(data["results"]) == {
        "planted-inside", "planted-outside-1-transfer", "planted-outside-far", "random-quadratic"}
    assert (tmp_path / "landscape-notebook.png").exists()
