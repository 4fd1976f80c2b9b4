"""Weight-free metrics against known values; the perceptual loss selection never downloads."""
from __future__ import annotations

import math

import pytest
import torch

from pruneseek.errors import PruneseekError
from pruneseek.losses import perceptual_loss
from pruneseek.metrics import gmsd, luminance, psnr, ssim


def _image(seed=0, size=48):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def test_psnr_known_value():
    x = torch.zeros(2, 3, 8, 8)
    y = x + 0.1
    assert torch.allclose(psnr(x, y), torch.full((2,), 20.0), atol=1e-4)


def test_identity_and_degradation_order():
    x = _image()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    mild, strong = (x + 0.02 * noise).clamp(0, 1), (x + 0.2 * noise).clamp(0, 1)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(gmsd(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(ssim(x, mild)) > float(ssim(x, strong))
    assert float(gmsd(x, mild)) < float(gmsd(x, strong))
    assert float(psnr(x, mild)) > float(psnr(x, strong))


def test_ssim_constant_images_by_hand():
    # Two constant images a, b: SSIM = (2ab + c1) / (a² + b² + c1) (the variance terms cancel).
    a, b, c1 = 0.2, 0.6, 0.01**2
    x = torch.full((1, 1, 16, 16), a, dtype=torch.float64)
    y = torch.full((1, 1, 16, 16), b, dtype=torch.float64)
    assert float(ssim(x, y)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)


def test_luminance_weights():
    x = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    assert float(luminance(x)) == pytest.approx(0.299)


def test_losses_are_differentiable():
    x = _image().requires_grad_(True)
    y = _image(seed=2)
    (gmsd(x, y).sum() + (1 - ssim(x, y)).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_perceptual_selection_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fn, note = perceptual_loss("auto")
    assert fn is gmsd and "GMSD" in note and "alexnet-owt-7be5be79.pth not found" in note
    with pytest.raises(PruneseekError, match="alexnet-owt-7be5be79.pth"):
        perceptual_loss("lpips")
    with pytest.raises(PruneseekError, match="unknown perceptual loss"):
        perceptual_loss("dists")
    assert math.isfinite(float(fn(_image(), _image(1)).mean()))
