"""The SD3 MMDiT (diffusers ``SD3Transformer2DModel``) under a per-sample depth mask (docs/design.md §2, §7).

The masked forward *is* diffusers' ``SD3Transformer2DModel.forward``: :func:`sd3_stack` gates the model's
``transformer_blocks`` in place (:mod:`pruneseek.engine.inplace`) and :func:`masked_forward` calls the model under
a mask. For a hard mask it equals diffusers' own ``skip_layers=[dropped indices]`` and the model with the
dropped blocks deleted (tests/test_sd3_target.py); SD3.5's options (dual attention layers, qk norm) run the
same way, since only the block loop is touched.
"""
from __future__ import annotations

import torch
from torch import nn

from pruneseek.engine import MaskedStack


def sd3_stack(model: nn.Module) -> MaskedStack:
    """The engine's view of the model's ``transformer_blocks``, gated in place (shared, not copied)."""
    return MaskedStack.over(model.transformer_blocks)


def masked_forward(model: nn.Module, stack: MaskedStack, masks: torch.Tensor | None = None, mode: str = "blend",
                   **inputs) -> torch.Tensor:
    """The model's own output (``return_dict=False``, first item) with its blocks under ``masks`` ``(batch, N)``."""
    with stack.masking(masks, mode):
        return model(**inputs, return_dict=False)[0]


# ----- the sd3 family (--model sd3): SD3 / SD3.5 transformers other than TSD-SR -----------------------------------

from pruneseek.targets.family import Family, latents_note, noise_latents  # noqa: E402 (the family builds on the masked forward)


class SD3Family(Family):
    """``SD3Transformer2DModel`` (SD3-medium, SD3.5 with dual attention layers and qk norm): one stack of joint
    blocks, the last one ``context_pre_only``; calibration inputs are latents, prompt and pooled embeddings and
    timesteps on the flow-matching scale (0–1000); the objective matches the predicted velocity."""

    name = "sd3"
    classes = ("SD3Transformer2DModel",)

    def synthetic_inputs(self, model, count, seed, size):
        c = model.config
        g = torch.Generator().manual_seed(seed)
        return {
            "hidden_states": noise_latents(model, count, size, g),
            "encoder_hidden_states": torch.randn(count, 8, c.joint_attention_dim, generator=g),
            "pooled_projections": torch.randn(count, c.pooled_projection_dim, generator=g),
            "timestep": torch.rand(count, generator=g) * 1000,
        }, {}

    def synthetic_note(self, model, size):
        return (f"synthetic: {latents_note(model, size)}, 8 N(0, 1) prompt tokens and a pooled embedding, timesteps "
                "uniform on [0, 1000)")

    def pruned_config(self, config, kept_per_stack):
        """``num_layers`` set, SD3.5's ``dual_attention_layers`` renumbered (as TSD-SR's export does)."""
        from pruneseek.export.prune import pruned_config

        return pruned_config(config, kept_per_stack[0])

    def prune_state(self, state, config, kept_per_stack, prefixes):
        from pruneseek.export.prune import prune_block_keys

        return prune_block_keys(state, int(config["num_layers"]), kept_per_stack[0])
