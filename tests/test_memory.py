"""The peak-memory estimate (pruneseek.memory): its arithmetic, against a measured peak on the CPU, and the search's
refusal when the free CUDA memory is short (issue 17)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from pruneseek.memory import TRAINABLE_BYTES, sd3_estimate, weight_bytes

SMALL = dict(sample_size=32, patch_size=2, in_channels=16, num_layers=8, attention_head_dim=64, num_attention_heads=4,
             joint_attention_dim=256, caption_projection_dim=256, pooled_projection_dim=64, out_channels=16,
             pos_embed_max_size=64)


def _small(dtype=torch.float32):
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    return SD3Transformer2DModel(**SMALL).to(dtype)


def test_weights_and_trainable_state_are_counted_exactly():
    from pruneseek.training import inject_lora, remove_lora

    model = _small()
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    assert weight_bytes(model, torch.float32) == 4 * params and weight_bytes(model, torch.bfloat16) == 2 * params
    est = sd3_estimate(model, 8, 16, dtype=torch.bfloat16, batch=1, checkpointing=False, lora_targets=["to_q", "to_k"],
                       lora_rank=4)
    lora = inject_lora(model, 4, 4.0, ["to_q", "to_k"])  # the same adapters on the real model
    assert est.trainable_params == sum(p.numel() for p in lora) and est.trainable == TRAINABLE_BYTES * len(
        [1 for p in lora for _ in range(p.numel())])
    remove_lora(model)
    assert est.total == est.weights + est.trainable + est.activations + est.workspace


def test_activations_scale_with_batch_and_shrink_with_checkpointing():
    model = _small()
    args = dict(dtype=torch.float32, lora_targets=None, lora_rank=4)
    one = sd3_estimate(model, 16, 16, batch=1, checkpointing=False, **args)
    four = sd3_estimate(model, 16, 16, batch=4, checkpointing=False, **args)
    ckpt = sd3_estimate(model, 16, 16, batch=1, checkpointing=True, **args)
    bigger = sd3_estimate(model, 32, 16, batch=1, checkpointing=False, **args)
    assert four.activations == 4 * one.activations_per_sample + one.activations_fixed and four.weights == one.weights
    assert one.activations_fixed < one.activations_per_sample + one.activations_fixed == one.activations
    assert ckpt.activations_per_sample < one.activations_per_sample / 2
    assert bigger.activations_per_sample > 3 * one.activations_per_sample  # 4× the image tokens


def test_merged_small_lora_layers_count_once_per_batch(monkeypatch):
    """Small LoRA layers run as one product with W + s·B A (pruneseek.training.SmallLoraLinear), whose merged
    weight the backward keeps once per batch, not per sample: exactly those bytes move into the fixed part."""
    import pruneseek.training as training

    model = _small()
    args = dict(dtype=torch.float32, batch=4, checkpointing=False, lora_targets=None, lora_rank=4)
    merged = sd3_estimate(model, 16, 16, **args)
    monkeypatch.setattr(training, "SMALL_LINEAR", 0)
    peft_form = sd3_estimate(model, 16, 16, **args)
    small = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and
             name.startswith("transformer_blocks") and m.weight.numel() <= 1 << 16]
    assert len(small) > 8 and training.SMALL_LINEAR == 0
    assert merged.activations_fixed - peft_form.activations_fixed == sum(4 * m.weight.numel() for m in small)
    assert merged.activations_per_sample < peft_form.activations_per_sample  # no x·Aᵀ kept per sample


def _measure(checkpointing: bool) -> dict:
    payload = {"config": SMALL, "latent_side": 48, "context_tokens": 64, "batch": 4, "dtype": "fp32",
               "checkpointing": checkpointing, "steps": 2, "lora_rank": 8}
    out = subprocess.run([sys.executable, "-m", "pruneseek.bench.real_shape", json.dumps(payload)],
                         capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_against_the_measured_peak_of_a_real_search_step(checkpointing):
    """A fresh process runs two search steps of a small SD3 on the CPU; its peak resident set over its start must
    lie between the estimate and the estimate plus the CPU runtime's own buffers (thread pools, allocator: well
    under 0.35 GB). At SD3-medium's shape the two agree within 1 % (results/bench-real-shape.json)."""
    run = _measure(checkpointing)
    estimate, measured = run["estimate"]["total_gb"], run["measured_run_gb"]
    assert 0.8 * estimate <= measured <= estimate + 0.35, (estimate, measured)


def test_card_table_at_sd3_medium_shape():
    from pruneseek.bench.real_shape import card_table

    rows = {(r["batch"], r["gradient_checkpointing"]): r for r in card_table()}
    assert rows[(1, True)]["parts"]["trainable_params"] == 89_268_224  # TSD-SR's LoRA on SD3-medium
    for ck in (True, False):
        assert rows[(1, ck)]["estimate_gb"] < rows[(2, ck)]["estimate_gb"] < rows[(4, ck)]["estimate_gb"]
    for batch in (1, 2, 4):
        assert rows[(batch, True)]["estimate_gb"] < rows[(batch, False)]["estimate_gb"]
    assert rows[(4, True)]["fits"]["24GB"] and not rows[(4, False)]["fits"]["24GB"]


def test_search_refuses_a_run_the_free_cuda_memory_cannot_hold(tmp_path, monkeypatch, capsys, weights):
    import pruneseek.memory
    from pruneseek.cli import main

    monkeypatch.setattr(pruneseek.memory, "cuda_free_bytes", lambda device: 1_000_000)  # 1 MB free
    args = ["search", "--weights", str(weights), "--ratio", "0.5", "--strategy", "tinyfusion", "--steps", "1",
            "--crops", "4", "--batch", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has 0.0 GB free" in err and "--ignore-memory-check" in err, err
    assert main([*args, "--out", str(tmp_path / "b"), "--ignore-memory-check"]) == 0
