"""Long runs never lose their result (issue 17 item 6): retrain, compare and tune refuse an --out they cannot write
before anything loads, and a finished result that cannot be written at the end goes to a rescue folder the error
names. (``pruneseek search``'s side is in test_io.py.)"""
from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path

import pytest

import pruneseek.experiment.compare as compare
import pruneseek.experiment.plots as plots
from pruneseek.cli import main
from pruneseek.targets.load import TargetSource

MASK = Path(__file__).resolve().parents[1] / "results" / "search" / "tsdsr-mini-r0.5-tinysr-s0" / "mask.json"
SMALL = ["--crops", "8", "--crop-size", "32", "--batch", "2", "--quiet"]
STEM = "compare-tsdsr-mini-r0.5"


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path_factory.getbasetemp() / "output-checks-cache"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "pruned"
    assert main(["export", "--mask", str(MASK), "--out", str(out), "--no-measure"]) == 0
    return out


@pytest.fixture
def rescue_dir(tmp_path, monkeypatch):
    """The system's temporary folder, where rescue folders go, redirected into the test's."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def nothing_loads(monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the model loaded before the output folder was checked")

    monkeypatch.setattr(TargetSource, "load", no_work)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _saved_to(err: str) -> Path:
    return Path(err.split("saved to ")[1].split(" instead")[0])


@pytest.mark.parametrize("command", ["retrain", "compare", "tune"])
def test_an_out_that_is_a_file_is_refused_before_anything_loads(command, exported, tmp_path, capsys, nothing_loads):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    args = {"retrain": ["retrain", "--from", str(exported), *SMALL],
            "compare": ["compare", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--quiet", "--strategies",
                        "bk-sdm", "--seeds", "0"],
            "tune": ["tune", "--strategy", "shortgpt", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--quiet"]}
    for out, says in ((taken, "is a file; give a folder"), (taken / "deeper" / "out", "which is a file")):
        assert main([*args[command], "--out", str(out)]) == 2
        err = _one_line(capsys)
        assert f"pruneseek {command}: error: --out {out} " in err and says in err, err
    assert taken.read_text() == "not a folder"


def test_retrain_still_refuses_its_own_source_and_a_busy_folder_first(exported, tmp_path, capsys, nothing_loads):
    assert main(["retrain", "--from", str(exported), "--out", str(exported), *SMALL]) == 2
    assert "must differ" in _one_line(capsys)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("x")
    assert main(["retrain", "--from", str(exported), "--out", str(busy), *SMALL]) == 2
    assert "already holds files" in _one_line(capsys)


def test_a_retrained_model_that_cannot_be_written_is_rescued(exported, tmp_path, capsys, monkeypatch, rescue_dir):
    from diffusers import SD3Transformer2DModel

    out = tmp_path / "retrained"
    real_plot = plots.plot_loss

    def disk_full_beside_out(history, path, title):
        if Path(path).parent.parent == tmp_path:  # the folder being built next to --out
            raise OSError(errno.ENOSPC, "No space left on device")
        real_plot(history, path, title)

    monkeypatch.setattr(plots, "plot_loss", disk_full_beside_out)
    assert main(["retrain", "--from", str(exported), "--out", str(out), "--steps", "2", *SMALL]) == 2
    err = _one_line(capsys)
    assert f"could not write the retrained model files to {out} (No space left on device); they were saved to" in err
    saved = _saved_to(err)
    assert saved.parent == rescue_dir and saved.name.startswith("pruneseek-rescued-retrained-")
    doc = json.loads((saved / "RETRAIN.json").read_text())
    assert doc["steps"] == 2 and doc["load"] == f"SD3Transformer2DModel.from_pretrained('{saved}')"
    assert {"prune_mask.json", "mask.json", "EXPORT.json", "loss.png"} <= {p.name for p in saved.iterdir()}
    assert SD3Transformer2DModel.from_pretrained(str(saved)).config.num_layers == 12
    assert not any(p.name.startswith(".retrained.tmp-") for p in tmp_path.iterdir())  # the half-built folder is gone


def _compare(out):
    return main(["compare", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--quiet", "--strategies", "bk-sdm",
                 "--seeds", "0", "--out", str(out)])


def test_a_comparison_row_that_cannot_be_written_is_rescued(tmp_path, capsys, monkeypatch, rescue_dir):
    out = tmp_path / "results"
    real_write = compare.write_outputs

    def disk_full_after_a_row(paths, doc, rows):
        if rows and paths["json"].parent == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(paths, doc, rows)

    monkeypatch.setattr(compare, "write_outputs", disk_full_after_a_row)
    assert _compare(out) == 2
    err = _one_line(capsys)
    assert f"could not write the comparison rows to {out} (No space left on device); they were saved to" in err
    saved = _saved_to(err)
    rows = json.loads((saved / f"{STEM}.json").read_text())["rows"]
    assert [(r["strategy"], r["seed"]) for r in rows] == [("bk-sdm", 0)] and (saved / f"{STEM}.csv").is_file()
    assert json.loads((out / f"{STEM}.json").read_text())["rows"] == []  # written before the row, as always


def test_comparison_plots_that_cannot_be_written_are_rescued_with_the_rows(tmp_path, capsys, monkeypatch,
                                                                           rescue_dir):
    out = tmp_path / "results"
    real_plots = compare._plots

    def disk_full_for_plots(rows, paths, title, num_layers, report):
        if paths["json"].parent == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_plots(rows, paths, title, num_layers, report)

    monkeypatch.setattr(compare, "_plots", disk_full_for_plots)
    assert _compare(out) == 2
    err = _one_line(capsys)
    assert f"could not write the comparison's rows and plots to {out} (No space left on device)" in err
    saved = _saved_to(err)
    assert {f"{STEM}.json", f"{STEM}.csv", f"{STEM}-metrics.png", f"{STEM}-masks.png"} <= {p.name for p in
                                                                                            saved.iterdir()}
    assert json.loads((saved / f"{STEM}.json").read_text())["rows"] == json.loads((out / f"{STEM}.json").read_text())[
        "rows"]
