"""The GAN term of stage-2 retraining: a discriminator on images and the adversarial losses (docs/design.md §9).

TinySR's stage 2 (supplement eq. A.5, arXiv:2508.17434) adds ``λ7 · L_GAN(D(z_stu))`` on the decoded student
image. pruneseek's discriminator is pluggable through :data:`DISCRIMINATORS`; the default, ``patch``, is
weight-free: a PatchGAN-style stack of strided 4×4 convolutions with spectral normalisation (Isola et al.,
arXiv:1611.07004; Miyato et al., arXiv:1802.05957) that scores overlapping patches, trained from scratch with
the student. A pretrained backbone needs its weights on disk; none ships here, and naming one that is not
registered is a clear error.

Losses (the non-saturating logistic GAN of Goodfellow et al., arXiv:1406.2661):

    L_D = softplus(−D(x_HR)) + softplus(D(x_SR))          L_G = softplus(−D(x_SR))

each a mean over the patch scores; images enter in [−1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pruneseek.errors import PruneseekError


class PatchDiscriminator(nn.Module):
    """Strided 4×4 convolutions (spectral norm, leaky ReLU) down to one score per patch."""

    def __init__(self, channels: int = 3, width: int = 32, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = channels
        for i in range(layers):
            c_out = width * 2**i
            blocks += [nn.utils.parametrizations.spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)),
                       nn.LeakyReLU(0.2)]
            c_in = c_out
        blocks.append(nn.utils.parametrizations.spectral_norm(nn.Conv2d(c_in, 1, 3, 1, 1)))
        self.net = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


#: Registered discriminators: name → constructor (weight-free ones need no file).
DISCRIMINATORS = {"patch": PatchDiscriminator}


def make_discriminator(name: str, seed: int = 0) -> nn.Module:
    """A freshly initialised discriminator (seeded without touching the global RNG)."""
    if name not in DISCRIMINATORS:
        raise PruneseekError(f"unknown discriminator {name!r}; available: {', '.join(DISCRIMINATORS)} (a pretrained "
                             "backbone needs its weights file on disk and a registered constructor)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DISCRIMINATORS[name]()


def generator_loss(disc: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """L_G = mean softplus(−D(fake)) (fake in [−1, 1])."""
    return F.softplus(-disc(fake)).mean()


def discriminator_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """L_D = mean softplus(−D(real)) + mean softplus(D(fake)) (fake detached by the caller)."""
    return F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()
