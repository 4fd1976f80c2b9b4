"""The engine's masked SD3 forward equals diffusers' ``skip_layers`` for any hard mask (docs/design.md §2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import SD3Transformer2DModel

from pruneseek.spaces import BlockSpace
from pruneseek.targets.sd3 import masked_forward, sd3_stack

TINY_SD3 = dict(
    sample_size=8, patch_size=2, in_channels=4, num_layers=6, attention_head_dim=8, num_attention_heads=2,
    joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=12, out_channels=4, pos_embed_max_size=16,
)


@pytest.fixture(scope="module")
def sd3():
    torch.manual_seed(0)
    model = SD3Transformer2DModel(**TINY_SD3).eval()
    g = torch.Generator().manual_seed(1)
    inputs = dict(
        hidden_states=torch.randn(3, 4, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(3, 5, 16, generator=g),
        pooled_projections=torch.randn(3, 12, generator=g),
        timestep=torch.full((3,), 1000.0),
    )
    return model, inputs


def _reference(model, inputs, dropped, rows=slice(None)):
    sliced = {k: v[rows] for k, v in inputs.items()}
    with torch.no_grad():
        return model(**sliced, skip_layers=list(dropped) or None).sample


@pytest.mark.parametrize("mode", ["blend", "skip"])
def test_hard_masks_equal_skip_layers(sd3, mode):
    model, inputs = sd3
    stack = sd3_stack(model)
    space = BlockSpace.uniform(6, 3, 2)
    rng = np.random.default_rng(0)
    for mask in [*space.sample(4, rng), np.ones(6, dtype=np.uint8), np.array([1, 0, 0, 1, 0, 0], dtype=np.uint8)]:
        masks = torch.tensor(np.stack([mask] * 3), dtype=torch.float32)
        with torch.no_grad():
            out = masked_forward(model, stack, masks=masks, mode=mode, **inputs)
        expected = _reference(model, inputs, np.flatnonzero(mask == 0))
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_per_sample_masks_match_per_sample_skip_layers(sd3):
    model, inputs = sd3
    stack = sd3_stack(model)
    masks = torch.tensor([[1, 1, 0, 1, 0, 1], [0, 1, 1, 1, 1, 0], [1, 0, 1, 0, 1, 1]], dtype=torch.float32)
    for mode in ("blend", "skip"):
        with torch.no_grad():
            out = masked_forward(model, stack, masks=masks, mode=mode, **inputs)
        for row in range(3):
            dropped = torch.nonzero(masks[row] == 0).flatten().tolist()
            expected = _reference(model, inputs, dropped, rows=slice(row, row + 1))
            torch.testing.assert_close(out[row : row + 1], expected, rtol=1e-5, atol=1e-6)


def test_unmasked_forward_equals_diffusers(sd3):
    model, inputs = sd3
    with torch.no_grad():
        out = masked_forward(model, sd3_stack(model), masks=None, **inputs)
    torch.testing.assert_close(out, _reference(model, inputs, []), rtol=1e-5, atol=1e-6)
