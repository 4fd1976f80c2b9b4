"""tsdsr-mini: the same classes and depth as TSD-SR, a lossless pixel latent, weights that reload exactly."""
from __future__ import annotations

import json

import pytest
import torch

from pruneseek.targets.mini import (
    MINI_CONFIG,
    MiniWeightsError,
    build_mini,
    load_mini,
    mini_target,
    pixel_decode,
    pixel_encode,
    save_mini,
)
from pruneseek.errors import PruneseekError


def test_architecture_matches_tsdsr_family():
    transformer, prompt, pooled = build_mini(0)
    assert type(transformer).__name__ == "SD3Transformer2DModel"
    assert len(transformer.transformer_blocks) == 24
    assert transformer.transformer_blocks[-1].context_pre_only
    assert not any(b.context_pre_only for b in transformer.transformer_blocks[:-1])
    assert prompt.shape == (1, 8, MINI_CONFIG["joint_attention_dim"])
    assert pooled.shape == (1, MINI_CONFIG["pooled_projection_dim"])


def test_pixel_latent_is_lossless_and_checks_sizes():
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    z = pixel_encode(x)
    assert z.shape == (2, 48, 8, 12)
    assert torch.equal(pixel_decode(z), x)
    with pytest.raises(PruneseekError, match="divisible by 8"):
        pixel_encode(torch.zeros(1, 3, 30, 32))


def test_untrained_teacher_returns_its_input():
    target = mini_target(*build_mini(0))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(target.super_resolve(x), x.clamp(-1, 1))


def test_save_load_round_trip(tmp_path):
    transformer, prompt, pooled = build_mini(3)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.02)
    path = save_mini(tmp_path / "mini.safetensors", transformer, prompt, pooled, {"command": "test"})
    target = load_mini(path)
    assert target.info["record"] == {"command": "test"}
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    reference = mini_target(transformer.half().float(), prompt.half().float(), pooled.half().float())
    with torch.no_grad():
        torch.testing.assert_close(target.sr_latent(pixel_encode(x)), reference.sr_latent(pixel_encode(x)))
    assert path.stat().st_size < 8_000_000


def test_missing_and_foreign_weights(tmp_path):
    with pytest.raises(MiniWeightsError, match="pruneseek teacher train"):
        load_mini(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(MiniWeightsError, match="not a readable safetensors file"):
        load_mini(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other), metadata={"format": "pruneseek.tsdsr-mini/v1", "config": json.dumps({"num_layers": 3})})
    with pytest.raises(MiniWeightsError, match="different tsdsr-mini architecture"):
        load_mini(other)
