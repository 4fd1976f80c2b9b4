"""`pruneseek landscape`: a small sweep writes valid JSON and a plot; --bench writes runs_per_minute."""
from __future__ import annotations

import json

import pytest

from pruneseek.cli import main
from pruneseek.landscape.sweep import ALGORITHMS, REFERENCES

# The same search settings as tests/landscape/test_lab_search.py's FAST (shared compilations).
SMALL_ARGS = ["--layers", "8", "--block", "4", "--keep", "2", "--seeds", "4", "--steps", "150", "--samples", "2",
              "--lr", "0.01", "--quiet"]
METRICS = ("success_rate", "mean_regret", "worst_regret", "mean_rank_percentile", "success_ci95",
           "in_block_space_rate", "block_optimum_rate", "transfer_optimum_rate")


def test_sweep_writes_valid_json_and_plot(tmp_path, capsys):
    assert main(["landscape", *SMALL_ARGS, "--out", str(tmp_path), "--name", "t", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    path = tmp_path / "landscape-t.json"
    data = json.loads(path.read_text())
    assert data == printed
    assert (tmp_path / "landscape-t.png").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert data["space"]["full"] == 70 and data["space"]["valid"] == 36 and data["seeds"] == 4
    assert set(data["results"]) == {"planted-inside", "planted-outside-1-transfer", "planted-outside-far",
                                    "random-quadratic"}
    for family, rows in data["results"].items():
        assert list(rows) == list(ALGORITHMS) + list(REFERENCES)
        for alg, row in rows.items():
            for key in METRICS:
                assert key in row, (family, alg, key)
            assert 0.0 <= row["success_rate"] <= 1.0 and row["runs"] == 4
            assert 0.0 <= row["mean_regret"] <= row["worst_regret"] + 1e-12
            assert 0.0 <= row["mean_rank_percentile"] < 1.0
    res = data["results"]
    assert res["planted-inside"]["oracle-block"]["success_rate"] == 1.0
    assert res["planted-outside-1-transfer"]["oracle-block"]["success_rate"] == 0.0
    assert res["planted-outside-1-transfer"]["oracle-transfer"]["success_rate"] == 1.0
    assert res["planted-outside-1-transfer"]["tinyfusion"]["success_rate"] == 0.0  # block-local by construction
    assert res["planted-outside-far"]["oracle-transfer"]["success_rate"] == 0.0
    pair = data["comparisons"]["planted-outside-1-transfer"]["tinysr-marginal vs tinyfusion"]
    assert pair["wins"] + pair["ties"] + pair["losses"] == 4 and pair["losses"] == 0


def test_sweep_subset_prints_a_table(tmp_path, capsys):
    assert main(["landscape", *SMALL_ARGS, "--out", str(tmp_path), "--families", "inside,transfer",
                 "--algorithms", "tinyfusion,tinysr,next-option", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "tinysr-next-option" in out and "planted-outside-1-transfer" in out
    data = json.loads((tmp_path / "landscape-n8-b4-s2.json").read_text())
    assert data["algorithms"] == ["tinyfusion", "tinysr-marginal", "tinysr-next-option"]
    assert not (tmp_path / "landscape-n8-b4-s2.png").exists()


@pytest.mark.parametrize("extra,message", [
    (["--families", "nope"], "unknown landscape family"),
    (["--algorithms", "nope"], "unknown algorithm"),
    (["--name", "../x"], "--name"),
    (["--layers", "12", "--topology", "chain", "--algorithms", "tinysr"], "matching"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, message):
    assert main(["landscape", *SMALL_ARGS, "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bench_writes_runs_per_minute(tmp_path, capsys):
    assert main(["landscape", "--bench", "--layers", "8", "--block", "4", "--keep", "2", "--seeds", "4",
                 "--steps", "150", "--samples", "2", "--lr", "0.01", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench-landscape.json").read_text())
    assert data["runs_per_minute"] > 0 and data["steps"] == 150 and data["seeds"] == 4
    assert set(data["per_algorithm"]) == {"tinyfusion", "tinysr-marginal", "tinysr-next-option"}
    assert "searches of 150 steps per minute" in capsys.readouterr().out


def test_sweep_is_deterministic_in_its_seeds():
    from pruneseek.landscape.search_jax import SearchConfig
    from pruneseek.landscape.sweep import run_sweep
    from pruneseek.spaces import BlockSpace, TransferSpace

    space = BlockSpace.uniform(8, 4, 2)
    cfg = SearchConfig(steps=150, samples=2, lr=1e-2)

    def results():
        out = run_sweep(space, TransferSpace(space, 1, "pairs"), families=["transfer", "random"], seeds=4, config=cfg)
        for rows in out["results"].values():
            for row in rows.values():
                row.pop("seconds", None)
        return out["results"]

    assert results() == results()


def test_sign_test_and_paired_counts():
    from pruneseek.landscape.sweep import paired, sign_test

    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    assert sign_test(1, 9) == pytest.approx(2 * 11 / 2**10)
    out = paired([0.0, 1.0, 2.0, 0.5], [0.0, 2.0, 1.0, 1.5])
    assert (out["wins"], out["ties"], out["losses"]) == (2, 1, 1)
    assert out["mean_regret_difference"] == pytest.approx(-0.25)
