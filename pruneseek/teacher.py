"""Train and evaluate the tsdsr-mini teacher (the bundled default target).

Training: fresh random HR crops of the built-in train photographs every step (a fixed pool overfits
within a few hundred steps), LR by the Real-ESRGAN second-order degradation (×4), input = LR upscaled 4× bicubic; the transformer learns v so that
z_HR ≈ z_LR − v (one step at t = 1000), with an L1 loss on the latents (the pixel-unshuffle latent is a
permutation of the pixels, so this is the pixel L1). The default-prompt context and pooled vector are
learned with it and then fixed. AdamW, cosine learning rate, gradient clip 1.0.

Evaluation: the held-out photographs, a centre crop per image, degraded with fixed seeds; PSNR and
SSIM (on [0, 1], see :mod:`pruneseek.metrics`) of the teacher's output and of plain bicubic
upsampling of the same LR, against HR.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pruneseek.data import SRPairs, bicubic_upscale
from pruneseek.latents import select_images
from pruneseek.metrics import psnr, ssim
from pruneseek.targets.mini import MULTIPLE, build_mini, load_mini, mini_target, save_mini


@dataclass
class TeacherConfig:
    steps: int = 1500
    batch: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-5
    crop_size: int = 64
    seed: int = 0
    clip_norm: float = 1.0
    #: Continue from these weights instead of a fresh initialisation (their record is kept as "previous").
    init: str | None = None
    #: Index of the first training pair (a continuation draws new crops, not the first run's again).
    first_pair: int = 0


def train_teacher(cfg: TeacherConfig, out: Path, command: str = "", progress: bool = True) -> dict:
    """Train tsdsr-mini from scratch and write its weights (with a record of how) to ``out``."""
    from tqdm.auto import tqdm

    from pruneseek.errors import PruneseekError

    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    images = select_images("train")
    pairs = SRPairs(images, hr_size=cfg.crop_size, scale=4, seed=cfg.seed)
    previous = None
    if cfg.init:
        start = load_mini(cfg.init)
        transformer, prompt, pooled = start.transformer.train(), start.prompt_embeds, start.pooled_embeds
        previous = start.info.get("record")
    else:
        transformer, prompt, pooled = build_mini(cfg.seed)
    prompt, pooled = torch.nn.Parameter(prompt.clone()), torch.nn.Parameter(pooled.clone())
    target = mini_target(transformer, prompt, pooled)
    params = list(transformer.parameters()) + [prompt, pooled]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    history: list[float] = []
    bar = tqdm(range(cfg.steps), desc="teacher", disable=not progress)
    for step in bar:
        lr_now = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * step / max(1, cfg.steps - 1)))
        for group in opt.param_groups:
            group["lr"] = lr_now
        batch = [pairs[cfg.first_pair + step * cfg.batch + j] for j in range(cfg.batch)]  # fresh crops and degradations every step
        y = torch.stack([b[0] for b in batch]) * 2 - 1
        x = bicubic_upscale(torch.stack([b[1] for b in batch]), 4) * 2 - 1
        z = target.encode(x)
        loss = (target.sr_latent(z) - target.encode(y)).abs().mean()
        if not torch.isfinite(loss):
            raise PruneseekError(f"teacher training hit a non-finite loss at step {step}; lower --lr and retrain")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        opt.step()
        history.append(float(loss.detach()))
        if step % 25 == 0:
            bar.set_postfix(l1=f"{sum(history[-25:]) / len(history[-25:]):.4f}")
    record = {
        "command": command,
        "config": asdict(cfg),
        "train_images": [p.name for p in images],
        "final_l1": sum(history[-50:]) / len(history[-50:]),
        "first_l1": sum(history[:50]) / len(history[:50]),
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "previous": previous,
    }
    save_mini(out, transformer, prompt.data, pooled.data, record)
    return record


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


def held_out_crops(
    crop: int = 192, seeds: tuple[int, ...] = tuple(range(6)), tile: int = 64, images: list[Path] | None = None
) -> list[dict]:
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
    weights: Path | None = None, crop: int = 192, seeds: tuple[int, ...] = tuple(range(6)), tile: int = 64
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


def command_line() -> str:
    return "pruneseek " + " ".join(sys.argv[1:])
