"""The refactor of issue 13 changed no numbers: short searches and a --quick comparison give the values the code
gave before it (recorded with ``tests/recorded_runs.py``, same seed and machine, one thread)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from recorded_runs import run_cases

RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_runs.json").read_text())


@pytest.fixture(scope="module")
def now(tmp_path_factory):
    import os

    old = os.environ.get("PRUNESEEK_CACHE")
    os.environ["PRUNESEEK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return run_cases(tmp_path_factory.mktemp("runs"))
    finally:
        if old is None:
            os.environ.pop("PRUNESEEK_CACHE")
        else:
            os.environ["PRUNESEEK_CACHE"] = old


@pytest.mark.parametrize("name", ["search-tinysr", "search-tinyfusion"])
def test_short_search_gives_the_recorded_mask_and_losses(now, name):
    want, got = RECORDED[name], now[name]
    assert got["mask"] == want["mask"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-7)
    assert got["marginals"] == pytest.approx(want["marginals"], rel=1e-5, abs=1e-7)
    for p, q in zip(got["probabilities"], want["probabilities"]):
        assert p == pytest.approx(q, rel=1e-5, abs=1e-7)


def test_quick_comparison_gives_the_recorded_rows(now):
    assert now["compare_settings_hash"] == RECORDED["compare_settings_hash"]
    assert set(now["compare_rows"]) == set(RECORDED["compare_rows"])
    for strategy, want in RECORDED["compare_rows"].items():
        got = now["compare_rows"][strategy]
        assert got["kept"] == want["kept"], strategy
        for key, value in want.items():
            if key != "kept":
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (strategy, key)
