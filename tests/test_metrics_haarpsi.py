"""HaarPSI (Reisenhofer et al. 2018) against an independent numpy re-implementation and its basic properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pruneseek.metrics import haarpsi


def _smooth_image(seed: int, size=(40, 48), channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, channels, size[0] // 4, size[1] // 4, generator=g, dtype=torch.float64)
    up = torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)
    return (up + 0.05 * torch.rand(up.shape, generator=g, dtype=torch.float64)).clamp(0, 1)


def _noisy(x: torch.Tensor, level: float, seed: int = 7) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    return (x + level * noise).clamp(0, 1)


# --- an independent re-implementation, written from the paper's formulas ---------------------------

def _np_conv_same(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB conv2(img, kernel, 'same'): the full convolution, then the central part starting at m // 2."""
    h, w = img.shape
    m, n = kernel.shape
    full = np.zeros((h + m - 1, w + n - 1))
    for a in range(m):
        for b in range(n):
            full[a : a + h, b : b + w] += kernel[a, b] * img
    return full[m // 2 : m // 2 + h, n // 2 : n // 2 + w]


def _np_haarpsi(ref: np.ndarray, dist: np.ndarray, c: float = 30.0, alpha: float = 4.2) -> float:
    """HaarPSI of two (H, W, 3) or (H, W) images in [0, 255]."""
    colour = ref.ndim == 3

    def to_yiq(img):
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        return [0.299 * r + 0.587 * g + 0.114 * b, 0.596 * r - 0.274 * g - 0.322 * b, 0.211 * r - 0.523 * g + 0.312 * b]

    ch_ref = to_yiq(ref) if colour else [ref]
    ch_dist = to_yiq(dist) if colour else [dist]
    box = np.ones((2, 2)) / 4
    ch_ref = [_np_conv_same(ch, box)[::2, ::2] for ch in ch_ref]
    ch_dist = [_np_conv_same(ch, box)[::2, ::2] for ch in ch_dist]

    def haar(k):  # 2^k × 2^k, value 2^-k, upper half of the rows negated
        side = 2**k
        sign = np.concatenate([-np.ones(side // 2), np.ones(side // 2)])
        return np.outer(sign, np.ones(side)) * 2.0**-k

    def s(a, b):
        return (2 * a * b + c) / (a * a + b * b + c)

    sims, weights = [], []
    for orient in (lambda f: f, lambda f: f.T):
        g1 = [np.abs(_np_conv_same(ch_ref[0], orient(haar(k)))) for k in (1, 2, 3)]
        g2 = [np.abs(_np_conv_same(ch_dist[0], orient(haar(k)))) for k in (1, 2, 3)]
        sims.append(0.5 * (s(g1[0], g2[0]) + s(g1[1], g2[1])))
        weights.append(np.maximum(g1[2], g2[2]))
    if colour:
        i1, i2 = np.abs(_np_conv_same(ch_ref[1], box)), np.abs(_np_conv_same(ch_dist[1], box))
        q1, q2 = np.abs(_np_conv_same(ch_ref[2], box)), np.abs(_np_conv_same(ch_dist[2], box))
        sims.append(0.5 * (s(i1, i2) + s(q1, q2)))
        weights.append(0.5 * (weights[0] + weights[1]))
    sims, weights = np.stack(sims), np.stack(weights)
    logistic = 1 / (1 + np.exp(-alpha * sims))
    p = (logistic * weights).sum() / weights.sum()
    return (math.log(p / (1 - p)) / alpha) ** 2


def _as_np(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) in [0, 1] → (H, W, C) or (H, W) in [0, 255]."""
    img = x[0].permute(1, 2, 0).numpy() * 255.0
    return img[..., 0] if img.shape[-1] == 1 else img


# --- tests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,size", [(3, (40, 48)), (3, (37, 45)), (1, (33, 40))])
def test_matches_independent_numpy_implementation(channels, size):
    x = _smooth_image(0, size, channels)
    for level in (0.02, 0.15):
        y = _noisy(x, level)
        expected = _np_haarpsi(_as_np(x), _as_np(y))
        assert float(haarpsi(x, y)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_identical_images_score_one():
    for channels in (1, 3):
        x = _smooth_image(1, channels=channels)
        assert float(haarpsi(x, x)) == pytest.approx(1.0, abs=1e-12)


def test_decreases_with_noise_level():
    x = _smooth_image(2)
    scores = [float(haarpsi(x, _noisy(x, level))) for level in (0.0, 0.01, 0.03, 0.1, 0.3)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


def test_symmetric_and_in_range():
    x, y = _smooth_image(3), _smooth_image(4)
    pairs = [(x, y), (x, _noisy(x, 0.2)), (x, 1 - x), (x, torch.zeros_like(x) + 0.5)]
    for a, b in pairs:
        ab, ba = float(haarpsi(a, b)), float(haarpsi(b, a))
        assert ab == pytest.approx(ba, rel=1e-12)
        assert 0.0 < ab <= 1.0


def test_batch_float32_and_gradient():
    x = torch.cat([_smooth_image(5), _smooth_image(6)]).float()
    y = _noisy(x.double(), 0.05).float().requires_grad_(True)
    scores = haarpsi(x, y)
    assert scores.shape == (2,)
    assert float(scores[1].detach()) == pytest.approx(float(haarpsi(x[1:].double(), y[1:].detach().double())), rel=1e-5)
    scores.sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_shape_errors():
    with pytest.raises(ValueError, match="one shape"):
        haarpsi(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="1 or 3"):
        haarpsi(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))
