"""`pruneseek compare` end to end with --quick budgets: outputs, continuing from finished rows, refusals."""
from __future__ import annotations

import csv
import json
import math

import pytest

from pruneseek import strategies
from pruneseek.cli import main
from pruneseek.maskfile import MaskFile
from pruneseek.strategies.base import CostMeter, SearchProblem, Strategy, rule_result

STEM = "compare-tsdsr-mini-r0.5"


class FakeStrategy(Strategy):
    """Keeps the first two layers of every block; asks for annealing; counts its searches."""

    name = "fake-test"
    defaults = {"anneal_steps": 100}
    searches = 0

    def recovery_overrides(self):
        return {"anneal_steps": self.settings["anneal_steps"]}

    def search(self, problem: SearchProblem, seed: int = 0):
        type(self).searches += 1
        mask = [1, 1, 0, 0] * (problem.space.num_layers // 4)
        trajectory = [{"step": 1, "marginals": [0.5] * len(mask)}, {"step": 2, "marginals": [float(v) for v in mask]}]
        return rule_result(self, problem, seed, mask, CostMeter(), steps=2, trajectory=trajectory)


@pytest.fixture(autouse=True)
def setup(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path_factory.getbasetemp() / "compare-cache"))
    monkeypatch.setitem(strategies.registry._REGISTRY, "fake-test", FakeStrategy)


def _compare(out, *extra):
    return main(["compare", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--quiet", "--out", str(out), *extra])


def _rows(out):
    return json.loads((out / f"{STEM}.json").read_text())["rows"]


def test_compare_writes_outputs_and_continues_from_finished_rows(tmp_path, capsys):
    out = tmp_path / "results"
    # a first, partial run (as if killed after one row)
    assert _compare(out, "--strategies", "bk-sdm", "--seeds", "0") == 0
    first = _rows(out)
    assert [(r["strategy"], r["seed"]) for r in first] == [("bk-sdm", 0)]
    capsys.readouterr()

    # the full run continues: the finished row is reused, the others are run
    FakeStrategy.searches = 0
    assert _compare(out, "--strategies", "bk-sdm,tinyfusion,fake-test", "--seeds", "0,1") == 0
    printed = capsys.readouterr().out
    assert "rows: 1 finished and reused, 5 to run" in printed
    assert printed.count("] ") >= 5 and "fake-test seed 1: kept" in printed
    rows = _rows(out)
    assert len(rows) == 6 and rows[0] == first[0] and FakeStrategy.searches == 2
    assert sorted((r["strategy"], r["seed"]) for r in rows) == sorted(
        (n, s) for n in ("bk-sdm", "tinyfusion", "fake-test") for s in (0, 1))

    doc = json.loads((out / f"{STEM}.json").read_text())
    assert doc["format"] == "pruneseek.compare/v1" and "--strategies bk-sdm,tinyfusion,fake-test" in doc["command"]
    assert doc["settings"]["recovery"]["steps"] == 3 and doc["settings"]["eval"]["seeds"] == [0]
    for row in rows:
        assert row["num_kept"] == 12 and len(row["kept"]) == 12
        for metric in ("psnr_teacher", "psnr", "ssim", "haarpsi", "gmsd", "l1_teacher"):
            assert math.isfinite(row[f"{metric}_before"]) and math.isfinite(row[f"{metric}_after"])
            per_crop = row["per_crop_after"][metric]
            assert len(per_crop) == len(row["per_crop_before"][metric]) >= 4  # one held-out crop per photograph
            assert sum(per_crop) / len(per_crop) == pytest.approx(row[f"{metric}_after"], abs=1e-4)
        assert row["recovery_steps"] == 3 and row["search_seconds"] >= 0
        assert MaskFile.load(row["mask_file"]).num_kept == 12
    fake = [r for r in rows if r["strategy"] == "fake-test"]
    assert all(r["anneal_steps"] == 1 and r["anneal_steps_requested"] == 100 for r in fake)  # min(T, 3 // 2)
    learned = [r for r in rows if r["strategy"] == "tinyfusion"]
    assert all(r["trajectory"] and r["search_backward_passes"] > 0 for r in learned)
    summary = doc["summary"]["bk-sdm"]["haarpsi_after"]
    assert summary["n"] == 2 and summary["std"] >= 0 and doc["summary"]["bk-sdm"]["seeds"] == [0, 1]
    assert summary["ci95"][0] <= summary["mean"] <= summary["ci95"][1]
    assert set(doc["ordering"]["order"]) == {"bk-sdm", "tinyfusion", "fake-test"}
    assert doc["ordering"]["metric"] == "psnr_teacher_after"

    with open(out / f"{STEM}.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    per_seed = [r for r in table if r["seed"] not in ("mean", "std", "ci_low", "ci_high")]
    assert len(per_seed) == 6 and len(table) == 6 + 4 * 3
    mean_row = next(r for r in table if r["strategy"] == "bk-sdm" and r["seed"] == "mean")
    assert float(mean_row["haarpsi_after"]) == pytest.approx(summary["mean"])
    low = next(r for r in table if r["strategy"] == "bk-sdm" and r["seed"] == "ci_low")
    assert float(low["haarpsi_after"]) == pytest.approx(summary["ci95"][0])
    assert {"strategy", "seed", "kept", "search_seconds", "recovery_seconds",
                                "psnr_before", "haarpsi_after", "l1_teacher_after"} <= set(table[0])
    for suffix in ("metrics", "masks", "trajectories", "cost"):
        assert (out / f"{STEM}-{suffix}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / STEM / "masks" / "fake-test-s1.json").is_file()

    # the same command again does no new work
    before = (out / f"{STEM}.json").read_text()
    assert _compare(out, "--strategies", "bk-sdm,tinyfusion,fake-test", "--seeds", "0,1") == 0
    assert "rows: 6 finished and reused, 0 to run" in capsys.readouterr().out
    assert FakeStrategy.searches == 2 and _rows(out) == json.loads(before)["rows"]


def test_other_settings_are_refused_unless_fresh(tmp_path, capsys):
    out = tmp_path / "results"
    assert _compare(out, "--strategies", "fake-test", "--seeds", "0") == 0
    capsys.readouterr()
    assert _compare(out, "--strategies", "fake-test", "--seeds", "0", "--recovery-steps", "4") == 2
    err = capsys.readouterr().err
    assert "other budget settings" in err and "recovery.steps (3 → 4)" in err and "--fresh" in err
    assert len(err.strip().splitlines()) == 1
    assert _compare(out, "--strategies", "fake-test", "--seeds", "0", "--recovery-steps", "4", "--fresh") == 0
    rows = _rows(out)
    assert len(rows) == 1 and rows[0]["recovery_steps"] == 4


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "results"
    assert _compare(out, "--strategies", "bk-sdm,nope") == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'nope'" in err and "available:" in err and len(err.strip().splitlines()) == 1
    assert _compare(out, "--ratio", "0.25") == 2
    assert "available ratios" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _compare(out, "--seeds", "0,x")
    assert exc.value.code == 2 and "seeds" in capsys.readouterr().err
    assert not out.exists()
