"""The SD3 MMDiT (diffusers ``SD3Transformer2DModel``) under a per-sample depth mask (docs/design.md §2, §7).

:func:`masked_sd3_forward` is ``SD3Transformer2DModel.forward`` with the block loop handed to the
engine's :class:`~pruneseek.engine.MaskedStack`: patch + position embedding, the time/pooled-text
embedding ``temb``, the context embedder, then the 24 joint blocks under the mask, then the output
norm, projection and unpatchify. For a hard mask it equals the diffusers forward with
``skip_layers=[dropped indices]`` (tests/test_sd3_target.py checks this at float32).
"""
from __future__ import annotations

import torch
from torch import nn

from pruneseek.engine import MaskedStack, MMDiTStream


def sd3_stack(model: nn.Module) -> MaskedStack:
    """The engine's view of the model's ``transformer_blocks`` (shared, not copied)."""
    return MaskedStack(model.transformer_blocks, MMDiTStream())


def unpatchify(model: nn.Module, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    p = model.config.patch_size
    h, w = height // p, width // p
    x = tokens.reshape(tokens.shape[0], h, w, p, p, model.out_channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(tokens.shape[0], model.out_channels, h * p, w * p)


def masked_sd3_forward(
    model: nn.Module,
    stack: MaskedStack,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    pooled_projections: torch.Tensor,
    timestep: torch.Tensor,
    masks: torch.Tensor | None = None,
    mode: str = "blend",
) -> torch.Tensor:
    """The SD3 transformer's output (velocity) with its blocks run under ``masks`` (``(batch, N)``)."""
    height, width = hidden_states.shape[-2:]
    h = model.pos_embed(hidden_states).contiguous()
    temb = model.time_text_embed(timestep, pooled_projections)
    c = model.context_embedder(encoder_hidden_states)
    h, _ = stack((h, c), masks, mode=mode, temb=temb)
    h = model.proj_out(model.norm_out(h, temb))
    return unpatchify(model, h, height, width)
