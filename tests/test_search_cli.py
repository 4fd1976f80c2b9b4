"""`pruneseek search` and `pruneseek teacher` end to end on small budgets (CPU)."""
from __future__ import annotations

import json

import pytest
import torch

from pruneseek.cli import main
from pruneseek.latents import PairSpec, as_tuple, calibration_latents, select_images
from pruneseek.maskfile import MaskFile
from pruneseek.targets.mini import load_mini


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("strategy", ["tinysr", "tinyfusion"])
def test_search_writes_a_valid_mask_file(tmp_path, weights, capsys, strategy):
    out = tmp_path / "run"
    code = main(["search", "--model", "tsdsr", "--ratio", "0.5", "--strategy", strategy, "--steps", "4", "--batch", "2",
                 "--crops", "4", "--crop-size", "32", "--weights", str(weights), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    mask = MaskFile.load(out / "mask.json")
    mask.check_model("tsdsr-mini", 24)
    assert mask.num_kept == 12 and mask.strategy_name == strategy and mask.steps == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept"] == list(mask.keep) and len(summary["loss"]["history"]) == 4
    assert "GMSD" in summary["loss"]["description"]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {out / 'mask.json'}" in printed and "loss: L1 to the teacher's latent + GMSD" in printed


def test_search_other_ratio_and_errors(tmp_path, weights, capsys):
    code = main(["search", "--ratio", "0.67", "--steps", "2", "--batch", "2", "--crops", "2", "--crop-size", "32",
                 "--weights", str(weights), "--out", str(tmp_path / "r67"), "--quiet"])
    assert code == 0 and MaskFile.load(tmp_path / "r67" / "mask.json").num_kept == 8
    capsys.readouterr()
    assert main(["search", "--ratio", "0.25", "--weights", str(weights), "--quiet"]) == 2
    assert "available ratios" in capsys.readouterr().err
    assert main(["search", "--space", "dit-28-r50", "--weights", str(weights), "--quiet"]) == 2
    assert "is for 28 layers, but the model has 24" in capsys.readouterr().err
    assert main(["search", "--base", str(tmp_path)]) == 2
    assert "needs all of --base, --lora and --embeddings" in capsys.readouterr().err
    assert main(["search", "--weights", str(tmp_path / "absent.safetensors")]) == 2
    assert "pruneseek teacher train" in capsys.readouterr().err
    assert main(["search", "--strategy", "nope", "--weights", str(weights), "--quiet"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err


def test_latent_cache_is_keyed_by_settings(tmp_path, weights):
    target = load_mini(weights)
    images = as_tuple(select_images("train")[:2])
    spec = PairSpec(images=images, count=3, hr_size=32, seed=0)
    first = calibration_latents(target, spec, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("latents-*.safetensors"))
    assert len(files) == 1
    again = calibration_latents(target, spec, cache_dir=tmp_path, progress=False)
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = calibration_latents(target, PairSpec(images=images, count=3, hr_size=32, seed=1), cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("latents-*.safetensors"))) == 2 and not torch.equal(first["lr"], other["lr"])
    # a cache file whose recorded key does not match is rebuilt, never reused
    from safetensors.torch import save_file

    save_file({k: v.contiguous() * 0 for k, v in first.items()}, str(files[0]), metadata={"key": "{}"})
    rebuilt = calibration_latents(target, spec, cache_dir=tmp_path, progress=False)
    assert torch.equal(rebuilt["z_tea"], first["z_tea"])
    assert torch.allclose(first["z_tea"], target.sr_latent(first["z_lr"]).detach(), atol=1e-5)


def test_teacher_train_and_eval_commands(tmp_path, capsys):
    out = tmp_path / "mini.safetensors"
    assert main(["teacher", "train", "--steps", "3", "--batch", "2", "--out", str(out), "--quiet"]) == 0
    record = load_mini(out).info["record"]
    assert record["config"]["steps"] == 3 and record["config"]["degradation"] == "testbed"
    assert record["command"].startswith("pruneseek")
    capsys.readouterr()
    assert main(["teacher", "eval", "--weights", str(out), "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert len(result["rows"]) == result["crops"] >= 100
    assert {"psnr_teacher", "psnr_bicubic", "haarpsi_teacher", "haarpsi_bicubic"} <= set(result["mean"])
    gain = result["teacher_minus_bicubic"]["psnr"]
    assert gain["ci_low"] <= gain["mean"] <= gain["ci_high"] and gain["verdict"] in ("better", "worse", "tie")
    printed = capsys.readouterr().out
    assert "teacher PSNR" in printed and "teacher − bicubic psnr" in printed


def test_bundled_teacher_beats_bicubic_on_held_out_images():
    """The committed tsdsr-mini weights beat bicubic upsampling of the same degraded held-out inputs, with the
    paired 95 % interval above zero on PSNR and HaarPSI."""
    from pruneseek.evaluation import eval_teacher

    result = eval_teacher()
    gains = result["teacher_minus_bicubic"]
    assert gains["psnr"]["ci_low"] > 0.5 and gains["haarpsi"]["ci_low"] > 0
    assert result["mean"]["ssim_teacher"] > result["mean"]["ssim_bicubic"]
    assert {r["image"] for r in result["rows"]} == {"astronaut", "china", "gravel", "coins"} and result["crops"] >= 100


def test_calibration_pairs_are_all_distinct():
    """Every calibration crop is its own (crop, degradation) draw, also beyond the number of images."""
    from pruneseek.latents import make_pairs

    images = as_tuple(select_images("train")[:2])
    hr, lr = make_pairs(PairSpec(images=images, count=6, hr_size=32, seed=0))
    assert len({t.numpy().tobytes() for t in lr}) == 6 and len({t.numpy().tobytes() for t in hr}) == 6
