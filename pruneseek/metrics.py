"""Weight-free image metrics and losses in torch (differentiable): PSNR, SSIM, GMSD, HaarPSI; and the papers'
Y-channel PSNR/SSIM (BasicSR's convention, not differentiable: :func:`psnr_y`, :func:`ssim_y`).

Images are ``(B, C, H, W)`` in [0, 1]. Each metric returns one value per image, shape ``(B,)``.

- PSNR: 10·log10(1 / MSE).
- SSIM (Wang et al., 2004): 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, on the luminance
  Y (ITU-R BT.601) of RGB images, 'valid' filtering (no padding); higher is better.
- GMSD (Xue et al., 2014, "Gradient Magnitude Similarity Deviation"): Prewitt gradient magnitudes of
  the luminance after 2× average-pool downsampling, c = 0.0026 (for [0, 1] images, i.e. 170/255²);
  the standard deviation of the similarity map; lower is better. Used as the weight-free perceptual
  term of the search loss when LPIPS weights are not available (docs/design.md §8).
- HaarPSI (Reisenhofer, Bosse, Kutyniok, Wiegand 2018, "A Haar wavelet-based perceptual similarity
  index for image quality assessment"): the authors' reference MATLAB definition (``HaarPSI.m``), on
  images scaled to [0, 255] in the YIQ colour form; higher is better, 1 for identical images. See
  :func:`haarpsi`.
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
    return _ssim_mean(x, y, _gaussian_window(window, sigma, x.dtype, x.device), 1.0)


def _ssim_mean(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, peak: float) -> torch.Tensor:
    """Mean SSIM map of one-channel ``x``, ``y`` ('valid' filtering with window ``w``; C1, C2 for ``peak``)."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
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


#: HaarPSI constants (the paper's and the reference code's values): similarity constant C, logistic slope α.
HAARPSI_C = 30.0
HAARPSI_ALPHA = 4.2
#: RGB → YIQ (the reference code's coefficients, rows Y, I, Q).
YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def conv2_same(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``conv2(x, kernel, 'same')`` on ``(B, 1, H, W)``: a true convolution, zero padding.

    'same' keeps the part of the full convolution that starts at offset ``floor(m / 2)`` per axis for a
    kernel of side ``m``; for even kernels that is one sample later than numpy/scipy's 'same'.
    """
    kh, kw = kernel.shape
    x = F.pad(x, (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2))
    return F.conv2d(x, kernel.flip(0, 1)[None, None].to(x))


def haar_filter(scale: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The reference code's 2-D Haar filter of scale k: side 2^k, entries ±2^−k, upper rows negative."""
    side = 2**scale
    f = torch.full((side, side), 2.0**-scale, dtype=dtype, device=device)
    f[: side // 2] *= -1
    return f


def _haarpsi_subsample(x: torch.Tensor) -> torch.Tensor:
    """The viewing-distance preprocessing: 2×2 mean filter ('same'), then every second sample."""
    mean = torch.full((2, 2), 0.25, dtype=x.dtype, device=x.device)
    return conv2_same(x, mean)[..., ::2, ::2]


def _similarity(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """S(a, b) = (2·a·b + C) / (a² + b² + C), the paper's similarity measure (on coefficient magnitudes)."""
    return (2 * a * b + c) / (a**2 + b**2 + c)


def haarpsi(
    x: torch.Tensor, y: torch.Tensor, c: float = HAARPSI_C, alpha: float = HAARPSI_ALPHA, subsample: bool = True
) -> torch.Tensor:
    """HaarPSI of ``x`` against ``y`` (both ``(B, 1 or 3, H, W)`` in [0, 1]), one value per image in (0, 1].

    Following the reference MATLAB code, on images scaled to [0, 255]:

    1. RGB → YIQ; then (``subsample``) every channel 2×2-mean filtered and decimated by 2.
    2. Haar coefficients of the luminance Y at scales k = 1, 2, 3 for the two orientations
       (filters ``haar_filter(k)`` and its transpose, ``conv2 'same'``).
    3. Per orientation o: local similarity HS_o = ½ Σ_{k=1,2} S(|g_k^x|, |g_k^y|) with
       S(a, b) = (2ab + C)/(a² + b² + C), and weight W_o = max(|g_3^x|, |g_3^y|).
    4. Colour (RGB input): HS_3 = ½ (S(|Ī^x|, |Ī^y|) + S(|Q̄^x|, |Q̄^y|)) on the 2×2-mean-filtered
       I and Q channels, W_3 = (W_1 + W_2)/2 (the paper's colour extension).
    5. HaarPSI = l_α⁻¹( Σ l_α(HS)·W / Σ W )², with l_α(s) = 1/(1 + e^{−αs}) and its inverse
       l_α⁻¹(p) = log(p/(1 − p))/α.

    C = 30, α = 4.2 (the paper's values). Symmetric in ``x`` and ``y``; 1 for identical images. Two
    constant images have no structure (all weights 0) and give NaN, as the reference does.
    """
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"haarpsi needs two images of one shape (B, 1 or 3, H, W), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x, y = x * 255.0, y * 255.0
    colour = x.shape[1] == 3
    if colour:
        yiq = torch.tensor(YIQ, dtype=x.dtype, device=x.device)
        x, y = torch.einsum("oc,bchw->bohw", yiq, x), torch.einsum("oc,bchw->bohw", yiq, y)
    if subsample:
        x, y = _haarpsi_subsample(x.flatten(0, 1)[:, None]), _haarpsi_subsample(y.flatten(0, 1)[:, None])
        x, y = x.reshape(-1, 3 if colour else 1, *x.shape[-2:]), y.reshape(-1, 3 if colour else 1, *y.shape[-2:])
    lum_x, lum_y = x[:, :1], y[:, :1]
    sims, weights = [], []
    for transpose in (False, True):  # orientation 1: filter as built, orientation 2: its transpose
        filters = [haar_filter(k, x.dtype, x.device) for k in (1, 2, 3)]
        filters = [f.t() if transpose else f for f in filters]
        gx = [conv2_same(lum_x, f).abs() for f in filters]
        gy = [conv2_same(lum_y, f).abs() for f in filters]
        sims.append((_similarity(gx[0], gy[0], c) + _similarity(gx[1], gy[1], c)) / 2)
        weights.append(torch.maximum(gx[2], gy[2]))
    if colour:
        mean = torch.full((2, 2), 0.25, dtype=x.dtype, device=x.device)
        ix, iy = conv2_same(x[:, 1:2], mean).abs(), conv2_same(y[:, 1:2], mean).abs()
        qx, qy = conv2_same(x[:, 2:3], mean).abs(), conv2_same(y[:, 2:3], mean).abs()
        sims.append((_similarity(ix, iy, c) + _similarity(qx, qy, c)) / 2)
        weights.append((weights[0] + weights[1]) / 2)
    sim, weight = torch.cat(sims, dim=1), torch.cat(weights, dim=1)
    pooled = (torch.sigmoid(alpha * sim) * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)
    return (torch.log(pooled / (1 - pooled)) / alpha) ** 2


# --------------------------------------------------------------------------------------------------------------
# The papers' convention (docs/design.md §9.4): BasicSR's ``calculate_psnr``/``calculate_ssim`` with
# ``test_y_channel=True`` on 8-bit images, as the SR papers' tables report them (BasicSR, and pyiqa's psnr/ssim).

#: BasicSR's ``rgb2ycbcr(y_only=True)`` / ``bgr2ycbcr`` luma coefficients for R, G, B in [0, 1] (BT.601 studio range).
YCBCR_Y = (65.481, 128.553, 24.966)


def y_channel_8bit(x: torch.Tensor) -> torch.Tensor:
    """The luma BasicSR measures, ``(B, 1, H, W)`` float64 on the [16, 235] scale, of RGB ``(B, 3, H, W)`` in [0, 1].

    1. 8-bit levels, as BasicSR sees images: ``q = round(clamp(x, 0, 1)·255)`` (``tensor2img`` for network outputs;
       for PNG/JPEG files read as uint8 ``x·255`` is already whole, so this is exact).
    2. ``to_y_channel``: ``y = (q / 255) · [65.481, 128.553, 24.966] + 16``, stored as float32 the way BasicSR's
       ``bgr2ycbcr`` returns a float32 image (``/255`` then ``·255``, float32), then float64.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W), got {tuple(x.shape)}")
    q = (x.detach().to(torch.float64).clamp(0, 1) * 255.0).round()
    unit = (q.to(torch.float32) / 255.0).to(torch.float64)
    coeff = torch.tensor(YCBCR_Y, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    y = ((unit * coeff).sum(dim=1, keepdim=True) + 16.0) / 255.0
    return (y.to(torch.float32) * 255.0).to(torch.float64)


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    if border < 0:
        raise ValueError(f"crop_border must be non-negative, got {border}")
    return x[..., border : x.shape[-2] - border, border : x.shape[-1] - border] if border else x


def _y_pair(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != hr.shape:
        raise ValueError(f"images differ in shape: {tuple(sr.shape)} and {tuple(hr.shape)}")
    return _crop(y_channel_8bit(sr), crop_border), _crop(y_channel_8bit(hr), crop_border)


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> torch.Tensor:
    """PSNR on the Y channel, BasicSR's convention (docs/design.md §9.4), one value per image ``(B,)`` in dB.

    ``sr`` and ``hr`` are ``(B, 3, H, W)`` in [0, 1]. Both go to 8-bit levels and to BasicSR's Y
    (:func:`y_channel_8bit`), ``crop_border`` pixels are trimmed from every edge, then
    ``10·log10(255² / MSE)`` in float64; identical images give ``inf`` (as BasicSR does).
    """
    y_sr, y_hr = _y_pair(sr, hr, crop_border)
    mse = ((y_sr - y_hr) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(255.0**2 / mse)


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> torch.Tensor:
    """SSIM on the Y channel, BasicSR's ``calculate_ssim`` (docs/design.md §9.4), one value per image ``(B,)``.

    The same 8-bit Y as :func:`psnr_y` on the 0–255 scale, ``crop_border`` trimmed; an 11×11 Gaussian window of
    σ 1.5 (``cv2.getGaussianKernel(11, 1.5)``, outer product), C1 = (0.01·255)², C2 = (0.03·255)², 'valid'
    filtering (BasicSR filters with ``cv2.filter2D`` and keeps ``[5:-5, 5:-5]``), the mean of the SSIM map.
    Needs at least 11 pixels per side after the crop.
    """
    x, y = _y_pair(sr, hr, crop_border)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11×11 pixels after the border crop, got {tuple(x.shape[-2:])}")
    return _ssim_mean(x, y, _gaussian_window(11, 1.5, torch.float64, x.device), 255.0)
