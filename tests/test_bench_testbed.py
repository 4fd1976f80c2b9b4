"""`pruneseek bench testbed`: headroom, harm and discrimination power of the bundled testbed (docs/design.md §6.8)."""
from __future__ import annotations

import json
import math

import pytest

from pruneseek.bench.testbed import power
from pruneseek.cli import main


def _cells(table: dict[tuple[int, int], float]) -> list[dict]:
    return [{"mask_index": m, "seed": s, "metrics": {"psnr_teacher": v}} for (m, s), v in table.items()]


def test_power_is_spread_over_pooled_seed_noise():
    # mask means 10, 11, 13 (spread 3); within-mask values ± 0.5 around them (std 0.5 each)
    table = {(m, s): base + d for m, base in enumerate((10.0, 11.0, 13.0)) for s, d in enumerate((-0.5, 0.0, 0.5))}
    p = power(_cells(table), "psnr_teacher")
    assert p["spread"] == pytest.approx(3.0) and p["noise_std"] == pytest.approx(0.5)
    assert p["discrimination_ratio"] == pytest.approx(6.0) and p["masks"] == 3 and p["seeds_per_mask"] == 3
    # the seed effect is the same for every mask: a paired comparison sees no noise at all
    assert p["noise_std_paired"] == pytest.approx(0.0, abs=1e-12) and math.isinf(p["discrimination_ratio_paired"])


def test_paired_noise_keeps_what_seeds_do_differently_per_mask():
    table = {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 2.0, (1, 1): 1.0}  # seed effects opposite per mask
    p = power(_cells(table), "psnr_teacher")
    assert p["spread"] == pytest.approx(0.0) and p["noise_std_paired"] == pytest.approx(1.0)


def test_bench_testbed_quick_writes_the_power_figure(tmp_path, capsys):
    out = tmp_path / "bench-testbed.json"
    assert main(["bench", "testbed", "--quick", "--ratios", "0.5", "--masks", "3", "--seeds", "0,1", "--out", str(out),
                 "--threads", "1"]) == 0
    doc = json.loads(out.read_text())
    assert doc["held_out_crops"] == 4 and doc["degradation"] == "testbed"  # --quick: one crop per photograph
    for metric in ("psnr", "haarpsi"):
        gain = doc["teacher_minus_bicubic"][metric]
        assert gain["ci_low"] <= gain["mean"] <= gain["ci_high"]
    block = doc["ratios"]["0.5"]
    assert len(block["masks"]) == 3 and len(block["cells"]) == 6 and len(block["zero_shot"]) == 3
    assert [m["origin"] for m in block["masks"]][:2] == ["bk-sdm", "shortgpt"]
    assert all(sum(m["mask"]) == 12 for m in block["masks"])
    assert set(doc["discrimination_ratio"]["0.5"]) == {"psnr_teacher", "psnr", "haarpsi", "l1_teacher"}
    printed = capsys.readouterr().out
    assert "teacher − bicubic psnr" in printed and "ratio 0.5: discrimination" in printed
    # a rerun with the same settings continues from the finished cells (nothing is recovered again)
    assert main(["bench", "testbed", "--quick", "--ratios", "0.5", "--masks", "3", "--seeds", "0,1", "--out", str(out),
                 "--threads", "1"]) == 0
    assert "continuing from" in capsys.readouterr().out
    assert json.loads(out.read_text())["ratios"]["0.5"]["cells"] == block["cells"]
