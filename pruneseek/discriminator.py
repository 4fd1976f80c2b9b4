"""The GAN term of stage-2 retraining: a discriminator on images and the adversarial losses (docs/design.md §9).

TinySR's stage 2 (supplement eq. A.5, arXiv:2508.17434) adds ``λ7 · L_GAN(D(z_stu))`` on the decoded student
image. pruneseek's discriminator is pluggable through :data:`DISCRIMINATORS`; the default, ``patch``, is
weight-free: a PatchGAN-style stack of strided 4×4 convolutions with spectral normalisation (Isola et al.,
arXiv:1611.07004; Miyato et al., arXiv:1802.05957) that scores overlapping patches, trained from scratch with
the student. ``vgg16`` puts a trainable patch head on a frozen ImageNet VGG16 (Simonyan & Zisserman,
arXiv:1409.1556); it needs torchvision and the weights file on disk (never downloaded), and says which file
when it is absent.

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


#: torchvision's ImageNet VGG16 weights, the backbone of ``--discriminator vgg16`` (looked up, never downloaded).
VGG16_FILE = "vgg16-397923af.pth"


def _hub_checkpoint(name: str):
    import os
    from pathlib import Path

    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    return home / "hub" / "checkpoints" / name


class VGGDiscriminator(nn.Module):
    """A frozen ImageNet VGG16 (its first three stages) with a trainable patch head on top."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.head = nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Conv2d(256, 64, 3, 1, 1)),
                                  nn.LeakyReLU(0.2), nn.Conv2d(64, 1, 1))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(((images + 1) / 2 - self.mean) / self.std))


def vgg16_discriminator() -> nn.Module:
    """:class:`VGGDiscriminator` from torchvision's VGG16 with the weights file on disk (a clear error otherwise)."""
    path = _hub_checkpoint(VGG16_FILE)
    if not path.is_file():
        raise PruneseekError(f"--discriminator vgg16 needs torchvision's VGG16 weights {VGG16_FILE} in torch's hub "
                             "cache ($TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints); put the "
                             "file there, or use --discriminator patch (weight-free)")
    try:
        import torchvision
    except Exception as exc:  # noqa: BLE001 - an absent or broken torchvision install alike
        raise PruneseekError(f"--discriminator vgg16 needs torchvision, which does not import here ({exc}); "
                             "use --discriminator patch") from None
    vgg = torchvision.models.vgg16()
    vgg.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return VGGDiscriminator(vgg.features[:16])


#: Registered discriminators: name → constructor. ``patch`` is weight-free; ``vgg16`` needs its weights file.
DISCRIMINATORS = {"patch": PatchDiscriminator, "vgg16": vgg16_discriminator}


def check_discriminator(name: str) -> None:
    """Refuse an unknown name, or a pretrained backbone whose weights file is absent, before any work."""
    if name not in DISCRIMINATORS:
        raise PruneseekError(f"unknown --discriminator {name!r}; available: {', '.join(DISCRIMINATORS)}")
    if name == "vgg16" and not _hub_checkpoint(VGG16_FILE).is_file():
        vgg16_discriminator()  # raises the message that names the file


def make_discriminator(name: str, seed: int = 0) -> nn.Module:
    """A freshly initialised discriminator (seeded without touching the global RNG)."""
    check_discriminator(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DISCRIMINATORS[name]()


def generator_loss(disc: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """L_G = mean softplus(−D(fake)) (fake in [−1, 1])."""
    return F.softplus(-disc(fake)).mean()


def discriminator_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """L_D = mean softplus(−D(real)) + mean softplus(D(fake)) (fake detached by the caller)."""
    return F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()
