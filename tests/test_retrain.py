"""`pruneseek retrain` (stage 1): a pruned export retrained towards the teacher's latents, written as a folder plain
diffusers loads; exact resume after SIGKILL; one-line errors; the real TSD-SR layout on a tiny model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import SD3Transformer2DModel
from safetensors.torch import load_file

from pruneseek.cli import main
from pruneseek.maskfile import MaskFile
from pruneseek.targets.load import TargetSource
from run_helpers import kill_after_checkpoint, write_images

MASK = Path(__file__).resolve().parents[1] / "results" / "search" / "tsdsr-mini-r0.5-tinysr-s0" / "mask.json"
SMALL = ["--crops", "8", "--crop-size", "32", "--batch", "2", "--quiet"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path_factory.getbasetemp() / "retrain-cache"))
    ENV["PRUNESEEK_CACHE"] = str(tmp_path_factory.getbasetemp() / "retrain-cache")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "pruned"
    assert main(["export", "--mask", str(MASK), "--out", str(out), "--no-measure"]) == 0
    return out


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


def test_retrain_writes_a_folder_diffusers_loads_and_lowers_the_loss(exported, tmp_path, capsys):
    out = tmp_path / "retrained"
    assert main(["retrain", "--from", str(exported), "--out", str(out), "--steps", "12", *SMALL]) == 0
    assert "12 steps" in capsys.readouterr().out
    model = SD3Transformer2DModel.from_pretrained(str(out))
    assert model.config.num_layers == 12
    doc = json.loads((out / "RETRAIN.json").read_text())
    assert doc["format"] == "pruneseek.retrain/v1" and doc["stage"] == 1 and len(doc["loss"]["history"]) == 12
    assert doc["loss"]["last"] < doc["loss"]["first"]
    assert doc["source_export"]["fingerprint"] == json.loads((exported / "EXPORT.json").read_text())["fingerprint"]
    assert {"prune_mask.json", "mask.json", "EXPORT.json", "loss.png"} <= {p.name for p in out.iterdir()}
    before, after = _weights(exported), _weights(out)
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    target = TargetSource(pruned=out).load()  # the retrained folder loads like an export
    assert target.num_layers == 12 and target.name == "tsdsr-mini-pruned"


def test_stage_two_trains_on_the_stage_one_output_with_a_discriminator(exported, tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "s1", tmp_path / "s2"
    assert main(["retrain", "--from", str(exported), "--out", str(first), "--steps", "4", *SMALL]) == 0
    assert main(["retrain", "--from", str(first), "--out", str(second), "--stage", "2", "--steps", "6", "--lr", "1e-4",
                 "--checkpoint-every", "3", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "stage 2: 5 L1 + 1 perceptual (GMSD" in out or "stage 2: 5 L1 + 1 perceptual (LPIPS" in out
    doc = json.loads((second / "RETRAIN.json").read_text())
    assert doc["stage"] == 2 and doc["recipe"]["lambda_gan"] == 0.3 and doc["recipe"]["disc_lr"] == 5e-6
    assert doc["source_export"]["folder"] == str(first)
    a, b = _weights(first), _weights(second)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert main(["retrain", "--from", str(first), "--out", str(tmp_path / "s3"), "--stage", "2",
                 "--discriminator", "vgg", *SMALL]) == 2
    assert "unknown --discriminator 'vgg'" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no weights there, whatever this machine has
    assert main(["retrain", "--from", str(first), "--out", str(tmp_path / "s4"), "--stage", "2",
                 "--discriminator", "vgg16", *SMALL]) == 2  # a pretrained backbone without its file: named
    err = capsys.readouterr().err
    assert "vgg16-397923af.pth" in err and len(err.strip().splitlines()) == 1


def test_lora_retraining_merges_the_adapters(exported, tmp_path):
    out = tmp_path / "lora"
    assert main(["retrain", "--from", str(exported), "--out", str(out), "--steps", "4", "--weight-update", "lora",
                 "--lora-rank", "4", "--ema-decay", "0", *SMALL]) == 0
    weights = _weights(out)
    assert not any("lora" in k for k in weights) and weights.keys() == _weights(exported).keys()
    assert json.loads((out / "RETRAIN.json").read_text())["trainable_parameters"] < 200_000


def test_killed_retrain_resumes_to_identical_weights(exported, tmp_path):
    args = ["retrain", "--from", str(exported), "--steps", "40", *SMALL]
    killed = tmp_path / "killed"
    checkpoint = killed / "checkpoint" / "checkpoint.pt"
    kill_after_checkpoint([*args, "--checkpoint-every", "2", "--out", str(killed)], checkpoint, ENV)
    assert not (killed / "RETRAIN.json").exists(), "the run finished before it could be killed; raise --steps"
    assert 0 < torch.load(checkpoint, weights_only=False)["step"] < 40
    reference = tmp_path / "reference"
    assert main([*args, "--out", str(reference)]) == 0
    assert main([*args, "--checkpoint-every", "2", "--out", str(killed), "--resume"]) == 0
    a, b = _weights(killed), _weights(reference)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((f / "RETRAIN.json").read_text())["loss"]["history"] for f in (killed, reference))
    assert ra == rb


def test_bad_retrain_inputs_are_one_line_errors(exported, tmp_path, capsys):
    def fails(*args: str, says: str) -> None:
        assert main(["retrain", *args, *SMALL]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err

    fails("--from", str(tmp_path / "nothing"), "--out", str(tmp_path / "o1"), says="not a folder")
    fails("--from", str(exported), "--out", str(exported), says="must differ")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("x")
    fails("--from", str(exported), "--out", str(busy), says="already holds files")
    other = tmp_path / "other-export"
    other.mkdir()
    record = json.loads((exported / "EXPORT.json").read_text())
    record["source"]["weights_sha256"] = "0" * 64
    (other / "EXPORT.json").write_text(json.dumps(record))
    fails("--from", str(other), "--out", str(tmp_path / "o2"), says="with other weights")
    fails("--from", str(exported), "--out", str(tmp_path / "o3"), "--steps", "2", "--resume",
          says="no checkpoint")
    assert not (tmp_path / "o1").exists()


def test_retrain_on_the_tsdsr_layout(tmp_path, capsys):
    """The real TSD-SR path on a tiny model of the same classes: export, then LoRA retraining on TSD-SR's names."""
    from tsdsr_files import write_tsdsr_files

    files = write_tsdsr_files(tmp_path / "tsdsr")
    model = ["--base", str(files["base"]), "--lora", str(files["lora"]), "--embeddings", str(files["emb"])]
    mask = MaskFile.from_mask([1, 0, 1], model_name="tsdsr", strategy_name="manual", settings={})
    mask_path = mask.save(tmp_path / "mask.json")
    pruned = tmp_path / "pruned"
    assert main(["export", "--mask", str(mask_path), "--out", str(pruned), "--no-measure", *model]) == 0
    images = write_images(tmp_path / "images")
    out = tmp_path / "retrained"
    assert main(["retrain", "--from", str(pruned), "--out", str(out), "--steps", "3", "--weight-update", "lora",
                 "--lora-rank", "2", "--data", str(images), "--crops", "4", "--crop-size", "32", "--batch", "2",
                 "--quiet", *model]) == 0, capsys.readouterr().err
    assert SD3Transformer2DModel.from_pretrained(str(out)).config.num_layers == 2


def test_bench_retrain_measures_the_loop_side_by_side(exported):
    from pruneseek.bench.retrain import bench_retrain
    from pruneseek.stats import interval as bootstrap_interval

    assert bootstrap_interval([2.0] * 5) == (2.0, 2.0)
    lo, hi = bootstrap_interval([0.0, 1.0, 2.0, 3.0, 4.0])
    assert 0.0 <= lo < 2.0 < hi <= 4.0
    doc = bench_retrain({"pruned": exported}, crop=64, seeds=(0, 1), rounds=1, per_image=1,
                        progress=lambda line: None)
    assert set(doc["metrics"]) == {"bicubic", "teacher", "pruned"} and doc["held_out"]["crops"] == 8
    diff = doc["metrics"]["pruned"]["psnr"]["minus_teacher"]
    assert diff["verdict"] in ("tie", "higher", "lower") and diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    assert "minus_teacher" not in doc["metrics"]["teacher"]["psnr"]
    costs = doc["costs"]
    assert costs["pruned"]["params"] < costs["teacher"]["params"] and costs["pruned"]["macs"] < costs["teacher"]["macs"]
    assert "bicubic" not in costs


def test_two_processes_follow_one_process(exported, tmp_path):
    """--nproc 2 (gloo) with global batch 2 ends where one process with batch 2 ends (up to float sums)."""
    args = ["retrain", "--from", str(exported), "--steps", "4", *SMALL]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--out", str(one)]) == 0
    proc = subprocess.run([sys.executable, "-m", "pruneseek", *args, "--nproc", "2", "--out", str(two)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    la, lb = (json.loads((f / "RETRAIN.json").read_text())["loss"]["history"] for f in (one, two))
    assert la == pytest.approx(lb, rel=1e-5, abs=1e-7)


def test_online_annealing_starts_at_the_teacher_and_ends_pruned(exported, tmp_path, capsys):
    out = tmp_path / "annealed"
    assert main(["retrain", "--from", str(exported), "--out", str(out), "--steps", "6", "--anneal-steps", "4",
                 "--ema-decay", "0", *SMALL]) == 0
    assert "the 12 dropped blocks fade out over 4 steps" in capsys.readouterr().out
    doc = json.loads((out / "RETRAIN.json").read_text())
    assert doc["loss"]["history"][0] < 1e-6  # σ = 1 at t = 0: the student is the teacher
    assert doc["loss"]["history"][-1] > 1e-4  # the dropped blocks are gone by then
    assert doc["recipe"]["anneal_steps"] == 4 and doc["recipe"]["anneal_replacement"] == "identity"
    model = SD3Transformer2DModel.from_pretrained(str(out))
    assert model.config.num_layers == 12 and _weights(out).keys() == _weights(exported).keys()
    assert main(["retrain", "--from", str(out), "--out", str(tmp_path / "again"), "--anneal-steps", "2",
                 *SMALL]) == 2  # annealing restarts from the teacher: a retrained folder would be ignored
    assert "already retrained" in capsys.readouterr().err


def test_feature_distillation_trains_projections_and_drops_them(exported, tmp_path):
    plain, distilled = tmp_path / "plain", tmp_path / "distilled"
    common = ["--steps", "3", "--ema-decay", "0", *SMALL]
    assert main(["retrain", "--from", str(exported), "--out", str(plain), *common]) == 0
    assert main(["retrain", "--from", str(exported), "--out", str(distilled), "--feature-distill", "0.5", *common]) == 0
    a, b = (json.loads((f / "RETRAIN.json").read_text()) for f in (plain, distilled))
    width = 64  # tsdsr-mini: 2 heads × 32
    assert b["trainable_parameters"] - a["trainable_parameters"] == 12 * (width * width + width)
    # at step 0 both students are the export; the distilled loss adds λ·(feature distance) > 0 on top of the same L1
    assert b["loss"]["history"][0] > a["loss"]["history"][0] + 1e-3
    assert _weights(distilled).keys() == _weights(plain).keys()  # the projections are not part of the model


def test_gradient_checkpointing_changes_memory_not_numbers(exported, tmp_path):
    plain, ckpt = tmp_path / "plain", tmp_path / "ckpt"
    common = ["--steps", "3", *SMALL]
    assert main(["retrain", "--from", str(exported), "--out", str(plain), *common]) == 0
    assert main(["retrain", "--from", str(exported), "--out", str(ckpt), "--gradient-checkpointing", *common]) == 0
    a, b = _weights(plain), _weights(ckpt)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_keeps_float32_weights_and_tracks_the_float32_run(exported, tmp_path, precision):
    full, mixed = tmp_path / "fp32", tmp_path / precision
    common = ["--steps", "3", "--ema-decay", "0", *SMALL]
    assert main(["retrain", "--from", str(exported), "--out", str(full), *common]) == 0
    assert main(["retrain", "--from", str(exported), "--out", str(mixed), "--autocast", precision, *common]) == 0
    a, b = _weights(full), _weights(mixed)
    assert all(b[k].dtype == a[k].dtype for k in a)
    la, lb = (json.loads((f / "RETRAIN.json").read_text())["loss"]["history"] for f in (full, mixed))
    assert lb == pytest.approx(la, rel=0.05) and lb != la  # 8- or 11-bit mantissas: close, not equal
    doc = json.loads((mixed / "RETRAIN.json").read_text())
    assert doc["recipe"]["autocast"] == precision and doc["loss"]["nonfinite_steps"] <= 3


def test_a_separate_lora_export_loads_with_its_lora_merged(tmp_path):
    """TargetSource(pruned=DIR) of a --lora-format separate export equals the merged export of the same mask."""
    from tsdsr_files import write_tsdsr_files

    files = write_tsdsr_files(tmp_path / "tsdsr")
    model = ["--base", str(files["base"]), "--lora", str(files["lora"]), "--embeddings", str(files["emb"])]
    mask_path = MaskFile.from_mask([1, 0, 1], model_name="tsdsr", strategy_name="manual", settings={}).save(
        tmp_path / "mask.json")
    for fmt in ("merged", "separate"):
        assert main(["export", "--mask", str(mask_path), "--out", str(tmp_path / fmt), "--no-measure",
                     "--lora-format", fmt, *model]) == 0
    source = dict(base=files["base"], lora=files["lora"], embeddings=files["emb"])
    merged = TargetSource(pruned=tmp_path / "merged", **source).load()
    separate = TargetSource(pruned=tmp_path / "separate", **source).load()
    assert separate.info["lora_merged_on_load"] and not merged.info["lora_merged_on_load"]
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(merged.sr_latent(z), separate.sr_latent(z), atol=1e-5)


def test_separate_lora_retraining_trains_tsdsr_lora_and_writes_it_apart(tmp_path, exported, capsys):
    """With a --lora-format separate export of the real TSD-SR layout: the base stays, TSD-SR's LoRA trains on."""
    from tsdsr_files import write_tsdsr_files

    files = write_tsdsr_files(tmp_path / "tsdsr")
    model = ["--base", str(files["base"]), "--lora", str(files["lora"]), "--embeddings", str(files["emb"])]
    mask_path = MaskFile.from_mask([1, 0, 1], model_name="tsdsr", strategy_name="manual", settings={}).save(
        tmp_path / "mask.json")
    pruned, out = tmp_path / "pruned", tmp_path / "retrained"
    assert main(["export", "--mask", str(mask_path), "--out", str(pruned), "--no-measure", "--lora-format",
                 "separate", *model]) == 0
    images = write_images(tmp_path / "images")
    assert main(["retrain", "--from", str(pruned), "--out", str(out), "--steps", "3", "--weight-update", "lora",
                 "--lora-format", "separate", "--lr", "1e-2", "--ema-decay", "0", "--data", str(images),
                 "--crops", "4", "--crop-size", "32", "--batch", "2", "--quiet", *model]) == 0, capsys.readouterr().err
    assert torch.equal(torch.cat([v.flatten() for v in _weights(out).values()]),
                       torch.cat([v.flatten() for v in _weights(pruned).values()]))  # the bare base is unchanged
    before = load_file(str(pruned / "lora" / "transformer.safetensors"))
    after = load_file(str(out / "lora" / "transformer.safetensors"))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert (out / "lora" / "vae.safetensors").is_file()
    source = dict(base=files["base"], lora=files["lora"], embeddings=files["emb"])
    assert TargetSource(pruned=out, **source).load().info["lora_merged_on_load"]
    assert main(["retrain", "--from", str(exported), "--out", str(tmp_path / "x"), "--weight-update", "lora",
                 "--lora-format", "separate", *SMALL]) == 2  # tsdsr-mini exports have no separate LoRA
    assert "--lora-format separate" in capsys.readouterr().err


def test_dtype_bf16_lora_retraining_halves_the_frozen_weights_and_tracks_float32(exported, tmp_path):
    """--dtype bf16 with LoRA: the base weights (and the teacher) in bfloat16, the adapters and optimiser in float32;
    the loss follows the float32 run closely and the written model is bfloat16."""
    full, half = tmp_path / "fp32", tmp_path / "bf16"
    common = ["--steps", "3", "--ema-decay", "0", "--weight-update", "lora", *SMALL]
    assert main(["retrain", "--from", str(exported), "--out", str(full), *common]) == 0
    assert main(["retrain", "--from", str(exported), "--out", str(half), "--dtype", "bf16", *common]) == 0
    assert all(v.dtype == torch.bfloat16 for v in _weights(half).values() if v.is_floating_point())
    la, lb = (json.loads((f / "RETRAIN.json").read_text())["loss"]["history"] for f in (full, half))
    assert lb == pytest.approx(la, rel=0.05)
    assert json.loads((half / "RETRAIN.json").read_text())["recipe"]["dtype"] == "bf16"


def test_dtype_and_a_different_autocast_are_refused(exported, tmp_path, capsys):
    code = main(["retrain", "--from", str(exported), "--out", str(tmp_path / "o"), "--dtype", "bf16", "--autocast",
                 "fp16", "--steps", "1", *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "drop --autocast fp16" in err
