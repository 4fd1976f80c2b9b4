"""Held-out evaluation: the crops, tiled super-resolution, the metrics, and scoring a model or a mask.

One module serves every evaluation pruneseek makes (``pruneseek teacher eval``, the comparison's before and
after recovery, tuning trials):

- :func:`held_out_crops` — the held-out photographs (astronaut, china, gravel; never seen by a search or by
  teacher training), a centre crop each, degraded once per seed by the Real-ESRGAN pipeline
  (:mod:`pruneseek.data.degrade`) and upscaled 4× bicubic;
- :func:`tiled` / :func:`sr_tiled` — super-resolution on half-overlapping tiles blended with a pyramid window
  (the teacher was trained at the tile size; its position embedding is centre-cropped per input size, so other
  sizes are off its training distribution);
- :data:`METRICS` and :func:`evaluate` — per crop, then averaged: PSNR, SSIM, HaarPSI and GMSD against HR
  (:mod:`pruneseek.metrics`), the mean absolute difference to the teacher's output, and LPIPS when its weights
  are present locally (otherwise the result says why it is absent); :func:`evaluate_zero_shot` scores a mask
  with the teacher's own weights (no training);
- :func:`eval_teacher` — the teacher against plain bicubic upsampling of the same degraded inputs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from pruneseek import recipes
from pruneseek.data import bicubic_upscale
from pruneseek.errors import RecoveryError
from pruneseek.latents import select_images
from pruneseek.mask import Mask
from pruneseek.metrics import psnr, ssim
from pruneseek.targets.mini import MULTIPLE, load_mini

#: Metric name → (direction, description); "up" means higher is better.
METRICS: dict[str, tuple[str, str]] = {
    "psnr": ("up", "PSNR to HR (dB)"),
    "ssim": ("up", "SSIM to HR (luminance)"),
    "haarpsi": ("up", "HaarPSI to HR"),
    "gmsd": ("down", "GMSD to HR"),
    "l1_teacher": ("down", "L1 to the teacher's output (pixels in [0, 1])"),
    "lpips": ("down", "LPIPS (AlexNet) to HR"),
}

def _centre_crop(image: torch.Tensor, size: int, multiple: int = MULTIPLE) -> torch.Tensor:
    _, h, w = image.shape
    side = min(size, h, w) // multiple * multiple
    top, left = (h - side) // 2, (w - side) // 2
    return image[:, top : top + side, left : left + side]


def tiled(fn, image: torch.Tensor, tile: int, stride: int | None = None) -> torch.Tensor:
    """Apply ``fn`` to ``tile``-pixel tiles of ``image`` ``(1, C, H, W)`` overlapping by ``tile − stride``,
    blended with a pyramid window (sides must be ``tile + k·stride``)."""
    stride = stride or tile // 2
    _, c, h, w = image.shape
    tops, lefts = range(0, h - tile + 1, stride), range(0, w - tile + 1, stride)
    out = fn(torch.cat([image[:, :, a : a + tile, b : b + tile] for a in tops for b in lefts]))
    ramp = torch.minimum(torch.arange(tile) + 1, tile - torch.arange(tile)).to(image.dtype)
    window = (ramp[:, None] * ramp[None, :])[None, None]
    total, weight = torch.zeros_like(image), torch.zeros(1, 1, h, w, dtype=image.dtype)
    for i, (a, b) in enumerate((a, b) for a in tops for b in lefts):
        total[:, :, a : a + tile, b : b + tile] += out[i : i + 1] * window
        weight[:, :, a : a + tile, b : b + tile] += window
    return total / weight


def held_out_crops(crop: int = recipes.EVAL["crop"], seeds: tuple[int, ...] = recipes.EVAL["seeds"],
                   tile: int = recipes.EVAL["tile"], images: list[Path] | None = None) -> list[dict]:
    """The evaluation inputs: per held-out photograph a centre crop (side a multiple of ``tile``), degraded
    once per seed (Real-ESRGAN, default settings) and upscaled 4× bicubic.

    Each item is ``{"image", "seed", "hr", "up"}`` with ``hr`` and ``up`` of shape ``(1, 3, H, W)`` in [0, 1].
    """
    from pruneseek.data import DegradationConfig, degrade, load_image

    items = []
    for path in images if images is not None else select_images("held_out"):
        hr = _centre_crop(load_image(path), crop, multiple=tile)
        for seed in seeds:
            lr = degrade(hr, DegradationConfig(), seed)
            items.append({"image": Path(path).stem, "seed": seed, "hr": hr[None], "up": bicubic_upscale(lr[None], 4)})
    return items


def sr_tiled(
    target, up: torch.Tensor, tile: int = 64, masks: torch.Tensor | None = None, mode: str = "blend"
) -> torch.Tensor:
    """SR image in [0, 1] of the bicubic-upscaled ``up`` (in [0, 1]), on ``tile``-pixel tiles overlapping by half.

    ``masks`` is one ``(1, N)`` mask row (or ``None``: the full model); it is applied to every tile in ``mode``.
    """

    def fn(tiles: torch.Tensor) -> torch.Tensor:  # tiles on the CPU, the model on its device
        tiles = tiles.to(target.device)
        if masks is None:
            return target.super_resolve(tiles).cpu()
        rows = masks.to(tiles.device).expand(tiles.shape[0], -1)
        return target.decode(target.sr_latent(target.encode(tiles), rows, mode)).clamp(-1, 1).cpu()

    with torch.no_grad():
        return (tiled(fn, up.cpu() * 2 - 1, tile) + 1) / 2


def eval_teacher(
    weights: Path | None = None, crop: int = recipes.EVAL["crop"], seeds: tuple[int, ...] = recipes.EVAL["seeds"],
    tile: int = recipes.EVAL["tile"],
) -> dict:
    """PSNR/SSIM of the teacher and of bicubic on the held-out photographs (same degraded inputs).

    The teacher runs on ``tile``-pixel tiles overlapping by half a tile, the size it was trained and is
    searched at (its position embedding is centre-cropped per input size, so other sizes are off its
    training distribution).
    """
    target = load_mini(weights)
    rows = []
    for item in held_out_crops(crop, seeds, tile):
        up, ref = item["up"], item["hr"]
        sr = sr_tiled(target, up, tile)
        rows.append({
            "image": item["image"], "seed": item["seed"], "size": list(ref.shape[-2:]),
            "psnr_teacher": float(psnr(sr, ref)), "psnr_bicubic": float(psnr(up, ref)),
            "ssim_teacher": float(ssim(sr, ref)), "ssim_bicubic": float(ssim(up, ref)),
        })
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr_teacher", "psnr_bicubic", "ssim_teacher", "ssim_bicubic")}
    return {"weights": str(target.info["weights"]), "crop": crop, "tile": tile, "seeds": list(seeds), "rows": rows,
            "mean": mean,
            "record": target.info.get("record", {})}



@dataclass
class EvalSet:
    """Held-out evaluation inputs and the teacher's outputs on them (computed once, reused per mask)."""

    crops: list[dict]
    teacher_sr: list[torch.Tensor]
    crop: int
    seeds: tuple[int, ...]
    tile: int

    def describe(self) -> dict[str, Any]:
        return {"crop": self.crop, "seeds": list(self.seeds), "tile": self.tile, "crops": len(self.crops),
                "images": sorted({c["image"] for c in self.crops})}


def eval_set(teacher, crop: int = recipes.EVAL["crop"], seeds: Sequence[int] = recipes.EVAL["seeds"],
             tile: int = recipes.EVAL["tile"]) -> EvalSet:
    """The held-out crops of ``pruneseek teacher eval`` and the full teacher's SR of each."""

    if crop < tile:
        raise RecoveryError(f"the evaluation crop ({crop} px) must be at least one tile ({tile} px)")
    crops = held_out_crops(crop, tuple(seeds), tile)
    return EvalSet(crops, [sr_tiled(teacher, c["up"], tile) for c in crops], crop, tuple(seeds), tile)


def _lpips_fn():
    """``(fn or None, note)``: LPIPS on images in [0, 1] when its weights are local, else why not."""
    from pruneseek.losses import lpips_status, perceptual_loss

    ok, why = lpips_status()
    if not ok:
        return None, f"LPIPS not computed: {why}"
    fn, note = perceptual_loss("lpips")
    return fn, note


def evaluate(student, teacher, mask: Sequence[int], data: EvalSet | None = None) -> dict[str, Any]:
    """Held-out metrics of ``student`` running the pruned forward (``mask``, skip mode); see the module docstring.

    ``data`` is an :class:`EvalSet` built once with the teacher (default: the full set of ``teacher eval``).
    Returns ``{"metrics": {name: mean}, "rows": [per crop], "crops", "lpips", "seconds"}``; ``"lpips"``
    is in ``metrics`` only when its weights are present locally, and the ``"lpips"`` entry says which.
    """
    from pruneseek.metrics import gmsd, haarpsi, psnr, ssim

    mask = Mask.of(mask, student.num_layers, error=RecoveryError).tolist()
    if teacher.num_layers != student.num_layers:
        raise RecoveryError(f"student ({student.num_layers} layers) and teacher ({teacher.num_layers}) differ in depth")
    started = time.perf_counter()
    data = data if data is not None else eval_set(teacher)
    lpips, lpips_note = _lpips_fn()
    row_mask = torch.tensor(mask, dtype=torch.float32)[None]
    rows = []
    for item, teacher_sr in zip(data.crops, data.teacher_sr):
        sr = sr_tiled(student, item["up"], data.tile, masks=row_mask, mode="skip")
        hr = item["hr"]
        row = {
            "image": item["image"], "seed": item["seed"],
            "psnr": float(psnr(sr, hr)), "ssim": float(ssim(sr, hr)), "haarpsi": float(haarpsi(sr, hr)),
            "gmsd": float(gmsd(sr, hr)), "l1_teacher": float((sr - teacher_sr).abs().mean()),
        }
        if lpips is not None:
            with torch.no_grad():
                row["lpips"] = float(lpips(sr, hr).mean())
        rows.append(row)
    names = [k for k in METRICS if k in rows[0]]
    return {
        "metrics": {k: sum(r[k] for r in rows) / len(rows) for k in names},
        "rows": rows,
        "crops": len(rows),
        "eval": data.describe(),
        "lpips": lpips_note,
        "seconds": time.perf_counter() - started,
    }


def evaluate_zero_shot(teacher, mask: Sequence[int], data: EvalSet | None = None) -> dict[str, Any]:
    """The mask *before* recovery: the teacher's own weights under the pruned forward (no training)."""
    return evaluate(teacher, teacher, mask, data)
