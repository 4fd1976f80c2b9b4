"""The Real-ESRGAN second-order degradation (Wang et al., 2021), ×4, as TinySR §A.1 uses it (docs/design.md §7).

Why our own: the maintained implementations (``basicsr``, ``realesrgan``) import torchvision, which does
not import beside the torch 2.13 CPU build pruneseek pins ("operator torchvision::nms does not exist").
This module follows the published settings with torch, numpy, scipy and PIL only.

HR (3, H, W) in [0, 1] → LR (3, H/4, W/4) in [0, 1], rounded to 8-bit levels:

1. stage 1: blur (random kernel) → random resize → Gaussian or Poisson noise (colour or gray) → JPEG;
2. stage 2: blur with probability 0.8 → random resize → noise → JPEG, with the stage-2 ranges;
3. final: with equal probability [resize to H/4 + sinc, then JPEG] or [JPEG, then resize + sinc];
   the final sinc is applied with probability 0.8 (else an identity kernel).

Every random choice comes from one ``numpy.random.Generator`` (seeded by the caller), so a seed fixes
the whole degradation.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special

from pruneseek import recipes

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class DegradationConfig:
    """Every setting of the second-order pipeline; the defaults are Real-ESRGAN's (docs/design.md §7)."""

    scale: int = 4
    kernel_sizes: tuple[int, int] = (7, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    sinc_prob2: float = 0.1
    final_sinc_prob: float = 0.8
    second_blur_prob: float = 0.8
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)
    jpeg_range2: tuple[int, int] = (30, 95)


#: Named degradations (overrides of :class:`DegradationConfig`); defined in :data:`pruneseek.recipes.DEGRADATIONS`.
PRESETS = recipes.DEGRADATIONS


def preset_config(name: str, scale: int = 4) -> DegradationConfig:
    """The :class:`DegradationConfig` of the named preset (:data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown degradation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return DegradationConfig(scale=scale, **PRESETS[name])


# ----- kernels ------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(ax, ax, indexing="xy")


def _inverse_covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    return np.linalg.inv(cov)


def _quadratic(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    xx, yy = _grid(size)
    inv = _inverse_covariance(sigma_x, sigma_y, theta)
    return inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    k = np.exp(-0.5 * _quadratic(size, sigma_x, sigma_y, theta))
    return k / k.sum()


def generalized_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    k = np.exp(-0.5 * np.power(_quadratic(size, sigma_x, sigma_y, theta), beta))
    return k / k.sum()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    k = 1.0 / (1.0 + np.power(_quadratic(size, sigma_x, sigma_y, theta), beta))
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float, pad_to: int = 21) -> np.ndarray:
    """Circular low-pass (2-D sinc) with cut-off frequency ``cutoff`` (radians), normalised, padded."""
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    k[r == 0] = cutoff**2 / (4 * np.pi)
    k = k / k.sum()
    if pad_to > size:
        p = (pad_to - size) // 2
        k = np.pad(k, ((p, p), (p, p)))
    return k


def random_kernel(rng: np.random.Generator, cfg: DegradationConfig, sigma: tuple[float, float], sinc_prob: float):
    """One random blur kernel as Real-ESRGAN draws it (size, type, σ, rotation, β; or a sinc)."""
    size = int(rng.choice(np.arange(cfg.kernel_sizes[0], cfg.kernel_sizes[1] + 1, 2)))
    if rng.random() < sinc_prob:
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        return sinc_kernel(size, cutoff, pad_to=21)
    kind = KERNEL_TYPES[int(rng.choice(len(KERNEL_TYPES), p=np.asarray(cfg.kernel_probs) / sum(cfg.kernel_probs)))]
    sx = rng.uniform(*sigma)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy, theta = (sx, 0.0) if iso else (rng.uniform(*sigma), rng.uniform(-np.pi, np.pi))
    if kind in ("iso", "aniso"):
        k = gaussian_kernel(size, sx, sy, theta)
    elif kind.startswith("generalized"):
        k = generalized_kernel(size, sx, sy, theta, rng.uniform(*cfg.betag_range))
    else:
        k = plateau_kernel(size, sx, sy, theta, rng.uniform(*cfg.betap_range))
    p = (21 - size) // 2
    return np.pad(k, ((p, p), (p, p)))


# ----- operations ---------------------------------------------------------------------------------------


def _filter(img: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    k = torch.as_tensor(kernel, dtype=img.dtype)
    pad = k.shape[-1] // 2
    mode = "reflect" if min(img.shape[-2:]) > pad else "replicate"  # tiny images after a strong downscale
    x = F.pad(img[None], (pad, pad, pad, pad), mode=mode)
    weight = k[None, None].expand(img.shape[0], 1, *k.shape)
    return F.conv2d(x, weight, groups=img.shape[0])[0]


def _resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(img[None], size=size, mode=mode, **kwargs)[0]


def _random_resize(img: torch.Tensor, rng, probs, scale_range) -> torch.Tensor:
    kind = int(rng.choice(3, p=np.asarray(probs) / sum(probs)))
    scale = rng.uniform(1, scale_range[1]) if kind == 0 else rng.uniform(scale_range[0], 1) if kind == 1 else 1.0
    h, w = img.shape[-2:]
    size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
    return _resize(img, size, RESIZE_MODES[int(rng.integers(3))])


def _noise(img: torch.Tensor, rng, gaussian_prob, sigma_range, poisson_range, gray_prob) -> torch.Tensor:
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    gray = rng.random() < gray_prob
    if rng.random() < gaussian_prob:
        sigma = rng.uniform(*sigma_range) / 255.0
        shape = (1, *img.shape[1:]) if gray else img.shape
        noise = torch.randn(shape, generator=gen, dtype=img.dtype) * sigma
    else:
        scale = rng.uniform(*poisson_range)
        src = (0.299 * img[0:1] + 0.587 * img[1:2] + 0.114 * img[2:3]) if gray else img
        src = src.clamp(0, 1)
        vals = 256.0  # 8-bit images: 2^ceil(log2(256 levels))
        noise = (torch.poisson(src * vals, generator=gen) / vals - src) * scale
    return (img + noise).clamp(0, 1)


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out).permute(2, 0, 1).to(img.dtype)


def degrade(hr: torch.Tensor, config: DegradationConfig | None = None, rng: np.random.Generator | int = 0) -> torch.Tensor:
    """HR ``(3, H, W)`` in [0, 1] → LR ``(3, H/scale, W/scale)``: the second-order pipeline, seeded."""
    cfg = config or DegradationConfig()
    rng = np.random.default_rng(rng)
    if hr.dim() != 3 or hr.shape[0] != 3:
        raise ValueError(f"degrade takes one RGB image (3, H, W), got shape {tuple(hr.shape)}")
    h, w = hr.shape[-2:]
    out_size = (h // cfg.scale, w // cfg.scale)
    img = hr.float().clamp(0, 1)
    # stage 1
    img = _filter(img, random_kernel(rng, cfg, cfg.blur_sigma, cfg.sinc_prob))
    img = _random_resize(img, rng, cfg.resize_prob, cfg.resize_range)
    img = _noise(img, rng, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob)
    img = _jpeg(img, rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))
    # stage 2
    if rng.random() < cfg.second_blur_prob:
        img = _filter(img, random_kernel(rng, cfg, cfg.blur_sigma2, cfg.sinc_prob2))
    kind = int(rng.choice(3, p=np.asarray(cfg.resize_prob2) / sum(cfg.resize_prob2)))
    r2 = cfg.resize_range2
    scale = rng.uniform(1, r2[1]) if kind == 0 else rng.uniform(r2[0], 1) if kind == 1 else 1.0
    size = (max(1, int(out_size[0] * scale)), max(1, int(out_size[1] * scale)))
    img = _resize(img, size, RESIZE_MODES[int(rng.integers(3))])
    img = _noise(img, rng, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2, cfg.gray_noise_prob2)
    # final: resize back + sinc and JPEG, in random order
    if rng.random() < cfg.final_sinc_prob:
        size_k = int(rng.choice(np.arange(cfg.kernel_sizes[0], cfg.kernel_sizes[1] + 1, 2)))
        final = sinc_kernel(size_k, rng.uniform(np.pi / 3, np.pi), pad_to=21)
    else:
        final = np.zeros((21, 21))
        final[10, 10] = 1.0
    quality = rng.integers(cfg.jpeg_range2[0], cfg.jpeg_range2[1] + 1)
    mode = RESIZE_MODES[int(rng.integers(3))]
    if rng.random() < 0.5:
        img = _filter(_resize(img, out_size, mode), final)
        img = _jpeg(img, quality)
    else:
        img = _jpeg(img, quality)
        img = _filter(_resize(img, out_size, mode), final)
    return (img.clamp(0, 1) * 255.0).round() / 255.0
