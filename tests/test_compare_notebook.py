"""notebooks/compare_strategies.ipynb runs end to end on `pruneseek compare --quick` (PRUNESEEK_NOTEBOOK_QUICK=1).

Executed with nbclient when it (and a Jupyter kernel) is importable, otherwise by exec()-ing the code cells
in order in one namespace, which is what a kernel would do with them.
"""
from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_strategies.ipynb"


def test_notebook_runs_on_a_quick_comparison(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("PRUNESEEK_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    import matplotlib

    matplotlib.use("Agg")
    nb = json.loads(NOTEBOOK.read_text())
    namespace: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[cell {i}]", "exec"), namespace)
    from pruneseek.evaluation import METRICS
    from pruneseek.experiment.compare import KEY_METRIC

    assert set(namespace["summary"]) == {"bk-sdm", "random-min", "shortgpt", "tinyfusion", "tinysr"}
    findings = namespace["findings"]
    primary = METRICS[KEY_METRIC][1].split(":")[0]  # "PSNR to the teacher's output (dB)"
    first = [line for line in findings if line.startswith(f"{primary}:")]
    assert len(first) == 1 and "95 % CI" in first[0]
    assert "significantly better than the runner-up" in first[0] or "(a tie)" in first[0]
    assert any(line.startswith("HaarPSI to HR:") for line in findings)
    assert any(line.startswith("Against random-min") for line in findings)
    assert any(line.startswith("Best learned strategy") and "95 % CI" in line for line in findings)
    assert any("Kendall τ with TinySR Table 2" in line for line in findings)
    for plot in ("metrics", "masks", "cost"):
        assert (tmp_path / f"compare-tsdsr-mini-r0.5-{plot}.png").exists()


def test_committed_notebook_carries_the_full_runs_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "made by: pruneseek compare --model tsdsr --ratio 0.5" in text and "--quick" not in text
    # metrics, masks, cost and trajectories
    assert sum(1 for o in outputs if "image/png" in o.get("data", {})) == 4
