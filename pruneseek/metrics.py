"""Weight-free image metrics and losses in torch (differentiable): PSNR, SSIM, GMSD.

Images are ``(B, C, H, W)`` in [0, 1]. Each metric returns one value per image, shape ``(B,)``.

- PSNR: 10·log10(1 / MSE).
- SSIM (Wang et al., 2004): 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, on the luminance
  Y (ITU-R BT.601) of RGB images, 'valid' filtering (no padding); higher is better.
- GMSD (Xue et al., 2014, "Gradient Magnitude Similarity Deviation"): Prewitt gradient magnitudes of
  the luminance after 2× average-pool downsampling, c = 0.0026 (for [0, 1] images, i.e. 170/255²);
  the standard deviation of the similarity map; lower is better. Used as the weight-free perceptual
  term of the search loss when LPIPS weights are not available (SPEC.md §8).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Y of BT.601 for RGB (scaled to [0, 1]); gray images pass through."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def psnr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / (mse + eps))


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x, y = luminance(x), luminance(y)
    w = _gaussian_window(window, sigma, x.dtype, x.device)
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mu_x**2
    syy = F.conv2d(y * y, w) - mu_y**2
    sxy = F.conv2d(x * y, w) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(dim=1)


def gmsd(x: torch.Tensor, y: torch.Tensor, c: float = 0.0026) -> torch.Tensor:
    x, y = F.avg_pool2d(luminance(x), 2), F.avg_pool2d(luminance(y), 2)
    px = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=x.dtype, device=x.device) / 3
    kernels = torch.stack([px, px.t()])[:, None]

    def magnitude(img: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(img, kernels)
        return torch.sqrt(g[:, 0:1] ** 2 + g[:, 1:2] ** 2 + 1e-12)

    mx, my = magnitude(x), magnitude(y)
    gms = (2 * mx * my + c) / (mx**2 + my**2 + c)
    return gms.flatten(1).std(dim=1)
