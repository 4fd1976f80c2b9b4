"""What a super-resolution target offers the engine: its block stack and a one-step SR forward.

A target wraps an SD3-family transformer (``SD3Transformer2DModel``) and the latent space it works in.
TSD-SR's one step (docs/design.md §7): the LR image, upscaled 4× bicubic, is encoded to ``z_LR``; the
transformer predicts the velocity ``v`` at t = 1000 for the fixed default prompt; ``z_HR = z_LR − v``;
decoding ``z_HR`` gives the SR image. Images are ``(B, 3, H, W)`` in [−1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pruneseek.engine import MaskedStack
from pruneseek.targets.sd3 import masked_forward, sd3_stack

#: TSD-SR's timestep for its single step (σ = 1).
ONE_STEP_T = 1000.0


@dataclass
class SRTarget:
    """An SD3-family one-step SR model: ``transformer`` + encode/decode + the fixed prompt conditioning.

    ``prompt_embeds`` is ``(1, T, joint_attention_dim)`` and ``pooled_embeds`` ``(1, pooled_projection_dim)``;
    ``encoder``/``decoder`` map images in [−1, 1] to latents and back (a VAE for TSD-SR, a fixed pixel
    (un)shuffle for tsdsr-mini). ``lora_targets`` names the transformer modules LoRA adapts.
    """

    name: str
    transformer: nn.Module
    prompt_embeds: torch.Tensor
    pooled_embeds: torch.Tensor
    encoder: Any
    decoder: Any
    lora_targets: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    #: The degradation preset (:data:`pruneseek.data.degrade.PRESETS`) of the LR inputs this target is
    #: calibrated, recovered and evaluated on: Real-ESRGAN's for TSD-SR, the testbed's for tsdsr-mini.
    degradation: str = "realesrgan"

    def __post_init__(self) -> None:
        self.stack: MaskedStack = sd3_stack(self.transformer)

    @property
    def num_layers(self) -> int:
        return len(self.transformer.transformer_blocks)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)

    def velocity(self, z_lr: torch.Tensor, masks: torch.Tensor | None = None, mode: str = "blend") -> torch.Tensor:
        """v(z_LR; t = 1000, default prompt), with the blocks under ``masks`` ``(batch, N)`` if given."""
        b = z_lr.shape[0]
        dtype = next(self.transformer.parameters()).dtype
        return masked_forward(
            self.transformer,
            self.stack,
            hidden_states=z_lr.to(dtype),
            encoder_hidden_states=self.prompt_embeds.to(z_lr.device, dtype).expand(b, -1, -1),
            pooled_projections=self.pooled_embeds.to(z_lr.device, dtype).expand(b, -1),
            timestep=torch.full((b,), ONE_STEP_T, device=z_lr.device),
            masks=masks,
            mode=mode,
        )

    def sr_latent(self, z_lr: torch.Tensor, masks: torch.Tensor | None = None, mode: str = "blend") -> torch.Tensor:
        """z_HR = z_LR − v (TSD-SR's one step)."""
        return z_lr - self.velocity(z_lr, masks, mode).to(z_lr.dtype)

    def super_resolve(self, lr_upscaled: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """SR image in [−1, 1] from the bicubic-upscaled LR image in [−1, 1]."""
        return self.decode(self.sr_latent(self.encode(lr_upscaled), masks)).clamp(-1, 1)
