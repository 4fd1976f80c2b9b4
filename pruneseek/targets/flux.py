"""FLUX (diffusers ``FluxTransformer2DModel``): 19 double-stream and 38 single-stream blocks (FLUX.1-dev/schnell).

Both block kinds carry the MMDiT pair (image tokens, text tokens) in diffusers (``FluxSingleTransformerBlock``
takes and returns the two streams), so one mask covers all ``num_layers + num_single_layers`` blocks in model
order: double blocks first (global indices 0..18), single blocks after (19..56). Search-space presets choose
one space over all 57 or separate spaces per stack (Flux.1-Lite's reading: its rule removes double blocks).
The export renumbers each stack and sets ``num_layers`` and ``num_single_layers``.

Calibration inputs: packed latents ``(B, (S/2)², in_channels)`` with their position ids, prompt and pooled
embeddings, timesteps in [0, 1) (the model scales them by 1000) and, for guidance-distilled models, a guidance
scale of 3.5; the objective matches the predicted velocity.
"""
from __future__ import annotations

import torch

from pruneseek.targets.family import Family

TEXT_TOKENS = 8


def image_ids(side: int) -> torch.Tensor:
    """FLUX's position ids of a ``side × side`` grid of packed latent tokens: ``(side², 3)`` rows ``(0, y, x)``."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([torch.zeros_like(ys), ys, xs], dim=-1).reshape(-1, 3).float()


class FluxFamily(Family):
    name = "flux"
    classes = ("FluxTransformer2DModel",)
    layer_keys = ("num_layers", "num_single_layers")

    def stacks(self, model):
        return [("transformer_blocks", model.transformer_blocks),
                ("single_transformer_blocks", model.single_transformer_blocks)]

    def synthetic_inputs(self, model, count, seed, size):
        c = model.config
        g = torch.Generator().manual_seed(seed)
        side = max(1, size // 2)
        samples = {
            "hidden_states": torch.randn(count, side * side, c.in_channels, generator=g),
            "encoder_hidden_states": torch.randn(count, TEXT_TOKENS, c.joint_attention_dim, generator=g),
            "pooled_projections": torch.randn(count, c.pooled_projection_dim, generator=g),
            "timestep": torch.rand(count, generator=g),
        }
        if c.guidance_embeds:
            samples["guidance"] = torch.full((count,), 3.5)
        return samples, {"img_ids": image_ids(side), "txt_ids": torch.zeros(TEXT_TOKENS, 3)}

    def synthetic_note(self, model, size):
        side = max(1, size // 2)
        return (f"synthetic: {side * side} packed N(0, 1) latent tokens, {TEXT_TOKENS} N(0, 1) prompt tokens and a pooled "
                "embedding, timesteps uniform on [0, 1)" + (", guidance 3.5" if model.config.guidance_embeds else ""))
