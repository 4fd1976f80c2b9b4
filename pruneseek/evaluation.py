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
- :func:`eval_teacher` — the teacher against plain bicubic upsampling of the same degraded inputs;
- :func:`evaluate_folders` and :func:`upscale_images` — ``pruneseek evaluate`` and ``pruneseek upscale`` on the
  user's image folders, with the papers' Y-channel PSNR/SSIM (BasicSR's convention, docs/design.md §9.4), files
  paired by name (:func:`pair_images`), any image size super-resolved on padded tiles (:func:`sr_image`).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from pruneseek import recipes
from pruneseek.data import bicubic_upscale
from pruneseek.data.images import open_image, read_errors
from pruneseek.data.images import rgb_pixels as _pixels
from pruneseek.errors import RecoveryError
from pruneseek.latents import select_images
from pruneseek.mask import Mask
from pruneseek.metrics import psnr, ssim
from pruneseek.targets.mini import MULTIPLE, load_mini

#: Metric name → (direction, description); "up" means higher is better.
METRICS: dict[str, tuple[str, str]] = {
    "psnr_teacher": ("up", "PSNR to the teacher's output (dB): fidelity, what recovery and retraining distil"),
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


def grid_crops(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every non-overlapping ``size``-pixel square of ``image`` on a grid centred in it (row by row)."""
    _, h, w = image.shape
    rows, cols = h // size, w // size
    top, left = (h - rows * size) // 2, (w - cols * size) // 2
    return [image[:, top + i * size : top + (i + 1) * size, left + j * size : left + (j + 1) * size]
            for i in range(rows) for j in range(cols)]


def held_out_crops(crop: int = recipes.EVAL["crop"], seeds: tuple[int, ...] = recipes.EVAL["seeds"],
                   tile: int = recipes.EVAL["tile"], images: list[Path] | None = None, degradation: str = "realesrgan",
                   split: str = "held_out", per_image: int | None = recipes.EVAL["per_image"]) -> list[dict]:
    """The evaluation inputs: every ``crop``-pixel square of a grid over each photograph of ``split``, degraded
    once per seed by the ``degradation`` preset and upscaled 4× bicubic (``crop`` a multiple of ``tile``).

    Crop k of a photograph with seed s is degraded with the generator seeded ``(s, k)``, so every crop has its
    own degradation. Each item is ``{"image", "crop", "seed", "hr", "up"}`` with ``hr`` and ``up`` of shape
    ``(1, 3, H, W)`` in [0, 1]; a photograph smaller than ``crop`` gives its centre square. ``per_image`` keeps
    that many squares per photograph, evenly spaced over the grid (None: all).
    """
    import numpy as np

    from pruneseek.data import degrade, load_image, preset_config

    if crop % tile:
        raise RecoveryError(f"the evaluation crop ({crop} px) must be a multiple of the tile ({tile} px)")
    config = preset_config(degradation)
    items = []
    for path in images if images is not None else select_images(split):
        image = load_image(path)
        squares = grid_crops(image, crop) or [_centre_crop(image, crop, multiple=tile)]
        if per_image is not None and per_image < len(squares):
            n = len(squares)
            picks = [n // 2] if per_image == 1 else [round(i * (n - 1) / (per_image - 1)) for i in range(per_image)]
            squares = [squares[i] for i in picks]
        for seed in seeds:
            for k, hr in enumerate(squares):
                lr = degrade(hr.contiguous(), config, np.random.default_rng([seed, k]))
                items.append({"image": Path(path).stem, "crop": k, "seed": seed, "hr": hr[None].contiguous(),
                              "up": bicubic_upscale(lr[None], 4)})
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
    tile: int = recipes.EVAL["tile"], per_image: int | None = recipes.EVAL["per_image"],
) -> dict:
    """PSNR, SSIM and HaarPSI of the teacher and of bicubic on the held-out crops (same degraded inputs), and
    the teacher-minus-bicubic difference per metric with its paired 95 % bootstrap interval over the crops.

    The teacher runs on ``tile``-pixel tiles overlapping by half a tile, the size it was trained and is
    searched at (its position embedding is centre-cropped per input size, so other sizes are off its
    training distribution).
    """
    from pruneseek.metrics import haarpsi
    from pruneseek.stats import interval, verdict

    target = load_mini(weights)
    rows = []
    with torch.no_grad():
        for item in held_out_crops(crop, seeds, tile, degradation=target.degradation, per_image=per_image):
            up, ref = item["up"], item["hr"]
            sr = sr_tiled(target, up, tile)
            row = {"image": item["image"], "crop": item["crop"], "seed": item["seed"]}
            for name, fn in (("psnr", psnr), ("ssim", ssim), ("haarpsi", haarpsi)):
                row[f"{name}_teacher"], row[f"{name}_bicubic"] = float(fn(sr, ref)), float(fn(up, ref))
            rows.append(row)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k.endswith(("_teacher", "_bicubic"))}
    gains = {}
    for name in ("psnr", "ssim", "haarpsi"):
        diff = [r[f"{name}_teacher"] - r[f"{name}_bicubic"] for r in rows]
        lo, hi = interval(diff)
        gains[name] = {"mean": sum(diff) / len(diff), "ci_low": lo, "ci_high": hi, "verdict": verdict(lo, hi)}
    return {"weights": str(target.info["weights"]), "degradation": target.degradation, "crop": crop, "tile": tile,
            "seeds": list(seeds), "crops": len(rows), "images": sorted({r["image"] for r in rows}), "mean": mean,
            "teacher_minus_bicubic": gains, "rows": rows, "record": target.info.get("record", {})}


@dataclass
class EvalSet:
    """Held-out evaluation inputs and the teacher's outputs on them (computed once, reused per mask)."""

    crops: list[dict]
    teacher_sr: list[torch.Tensor]
    crop: int
    seeds: tuple[int, ...]
    tile: int
    split: str = "held_out"

    def describe(self) -> dict[str, Any]:
        return {"split": self.split, "crop": self.crop, "seeds": list(self.seeds), "tile": self.tile,
                "crops": len(self.crops), "images": sorted({c["image"] for c in self.crops})}


def eval_set(teacher, crop: int = recipes.EVAL["crop"], seeds: Sequence[int] = recipes.EVAL["seeds"],
             tile: int = recipes.EVAL["tile"], per_image: int | None = recipes.EVAL["per_image"],
             split: str = "held_out") -> EvalSet:
    """The crops of ``split`` (default the held-out set of ``pruneseek teacher eval``), degraded as the teacher
    expects, and the full teacher's SR of each."""

    if crop < tile:
        raise RecoveryError(f"the evaluation crop ({crop} px) must be at least one tile ({tile} px)")
    crops = held_out_crops(crop, tuple(seeds), tile, degradation=teacher.degradation, split=split,
                           per_image=per_image)
    with torch.no_grad():
        teacher_sr = [sr_tiled(teacher, c["up"], tile) for c in crops]
    return EvalSet(crops, teacher_sr, crop, tuple(seeds), tile, split)


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
            "psnr_teacher": float(psnr(sr, teacher_sr)),
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


# --------------------------------------------------------------------------------------------------------------
# Evaluating and upscaling image folders (`pruneseek evaluate`, `pruneseek upscale`; docs/design.md §9.4)

#: Image files the folder commands read (anything PIL decodes with one of these suffixes).
IMAGE_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: The tile sides of the SR models: tsdsr-mini needs multiples of 8 (pixel unshuffle 4 × patch 2), TSD-SR of 16
#: (VAE 8 × patch 2); 16 serves both, and half a tile (the overlap) is then a multiple of 8.
TILE_MULTIPLE = 16
#: Metrics of `pruneseek evaluate` (name → direction, description), per image against HR.
FOLDER_METRICS: dict[str, tuple[str, str]] = {
    "psnr_y": ("up", "PSNR on Y (BasicSR: 8-bit, BT.601 studio range, border crop = scale), dB"),
    "ssim_y": ("up", "SSIM on Y (BasicSR: 11×11 Gaussian σ 1.5, 'valid', border crop = scale)"),
    "haarpsi": ("up", "HaarPSI to HR (RGB, whole image)"),
    "gmsd": ("down", "GMSD to HR (whole image)"),
    "lpips": ("down", "LPIPS (AlexNet) to HR, when its weights are local"),
}
#: Metrics the papers report that pruneseek does not compute: the files pyiqa (IQA-PyTorch) loads for them.
PYIQA_WEIGHTS = {
    "dists": "DISTS_weights-f5e65c96.pth (and torchvision's vgg16-397923af.pth)",
    "niqe": "niqe_modelparameters.mat",
    "musiq": "musiq_koniq_ckpt-e95806b9.pth",
    "clipiqa": "RN50.pt (OpenAI CLIP ResNet-50)",
}
CONVENTION = ("psnr_y/ssim_y: BasicSR calculate_psnr/calculate_ssim with test_y_channel on 8-bit images, "
              "Y = 16 + (65.481 R + 128.553 G + 24.966 B) for RGB in [0, 1], crop_border = scale; haarpsi, gmsd "
              "(and lpips) on the whole RGB images; model outputs rounded to 8 bits first, as if saved as PNG")


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as ``(3, H, W)`` float32 in [0, 1], upright (the EXIF orientation applied, as OpenCV's
    ``imread`` does), gray replicated, alpha dropped, 16-bit gray kept at full range; unreadable → DataError."""
    from PIL import ImageOps

    from pruneseek.errors import DataError

    try:
        with open_image(path) as im:
            arr = _pixels(ImageOps.exif_transpose(im))
    except read_errors() as exc:
        raise DataError(f"cannot read image {path}: {exc}; remove it or convert it to PNG") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def check_readable(files: list[Path]) -> None:
    """Open every file's header (cheap, nothing decoded): a file PIL cannot identify is a DataError naming it
    before any work starts. (A file damaged past its header fails later, in :func:`read_image`.)"""
    from pruneseek.errors import DataError

    for f in files:
        try:
            with open_image(f):
                pass
        except read_errors() as exc:
            raise DataError(f"cannot read image {f}: {exc}; remove it or convert it to PNG") from None


def image_files(path: str | Path, what: str = "input", folder_only: bool = False) -> list[Path]:
    """The image files ``path`` names: itself (a file) or its files (a folder, sorted; hidden files skipped).

    A missing path, an empty folder, or a file without an image suffix (:data:`IMAGE_FILE_SUFFIXES`) is a
    DataError naming it.
    """
    from pruneseek.errors import DataError

    path = Path(path)
    suffixes = "/".join(s[1:] for s in IMAGE_FILE_SUFFIXES)
    if path.is_file() and not folder_only:
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{what} folder {path} holds no images")
    else:
        kind = "is not a folder" if path.exists() else "does not exist"
        wanted = "a folder of images" if folder_only else "an image or a folder"
        raise DataError(f"{what} {path} {kind}; give {wanted}")
    for f in files:
        if f.suffix.lower() not in IMAGE_FILE_SUFFIXES:
            where = f"; move it out of the {what} folder" if path.is_dir() else ""
            raise DataError(f"{f} is not an image file (expected {suffixes}){where}")
    return files


#: Output suffixes SR tools append, removed first; then one dataset suffix (RealSR, DRealSR, DIV2K).
_OUTPUT_SUFFIX = re.compile(r"_(out|sr)$", re.IGNORECASE)
_DATASET_SUFFIX = re.compile(r"(_hr|_lr[234]|_x[1-4]|(?<=\d)x[234])$", re.IGNORECASE)
NAME_RULE = ("names match after removing, case-insensitively, a trailing _out or _sr, then one of _HR, _LR2, _LR3, "
             "_LR4 (RealSR), _x1.._x4 (DRealSR) or x2/x3/x4 right after a digit (DIV2K: 0801x4 = 0801)")


def name_key(stem: str) -> str:
    """The stem two paired files share (:data:`NAME_RULE`): ``Canon_001_LR4_out`` → ``Canon_001``,
    ``0801x4`` → ``0801``."""
    return _DATASET_SUFFIX.sub("", _OUTPUT_SUFFIX.sub("", stem))


def _keyed(files: list[Path], folder: Path) -> dict[str, Path]:
    from pruneseek.errors import DataError

    keyed: dict[str, Path] = {}
    for f in files:
        key = name_key(f.stem)
        if key in keyed:
            raise DataError(f"{keyed[key].name} and {f.name} in {folder} both pair as {key!r} ({NAME_RULE})")
        keyed[key] = f
    return keyed


def pair_images(hr_dir: str | Path, other_dir: str | Path, other: str = "SR") -> list[tuple[str, Path, Path]]:
    """``(stem, hr_path, other_path)`` for every HR image and its partner in ``other_dir``, sorted by stem.

    Files pair by a normalised stem (:func:`name_key`): a trailing ``_out``/``_sr`` (SR outputs) is removed,
    then one dataset suffix — ``_HR``, ``_LR2``, ``_LR3``, ``_LR4`` (RealSR), ``_x1``–``_x4`` (DRealSR), or
    ``x2``/``x3``/``x4`` right after a digit (DIV2K: ``0801x4.png`` ↔ ``0801.png``); case-insensitive, file
    suffixes ignored. Every file must find a partner: otherwise a DataError names the first unmatched file on
    each side and the rule. A missing or empty folder is a DataError too.
    """
    from pruneseek.errors import DataError

    hr_dir, other_dir = Path(hr_dir), Path(other_dir)
    hr = _keyed(image_files(hr_dir, "HR", folder_only=True), hr_dir)
    oth = _keyed(image_files(other_dir, other, folder_only=True), other_dir)
    lonely_hr = sorted(k for k in hr if k not in oth)
    lonely_other = sorted(k for k in oth if k not in hr)
    if lonely_hr or lonely_other:
        parts = []
        if lonely_hr:
            parts.append(f"HR {hr[lonely_hr[0]].name} has no partner in {other_dir} ({len(lonely_hr)} unmatched)")
        if lonely_other:
            parts.append(f"{other} {oth[lonely_other[0]].name} has no partner in {hr_dir} "
                         f"({len(lonely_other)} unmatched)")
        raise DataError(f"cannot pair the images by name: {'; '.join(parts)}; {NAME_RULE}")
    return [(k, hr[k], oth[k]) for k in sorted(hr)]


def check_sr_settings(tile: int, scale: int) -> None:
    """The SR models' limits: ×4 only, tiles a multiple of :data:`TILE_MULTIPLE` (DataError otherwise)."""
    from pruneseek.errors import DataError

    if scale != 4:
        raise DataError(f"the SR models are ×4; --scale {scale} works only with --model bicubic or --sr")
    if tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        raise DataError(f"--tile must be a multiple of {TILE_MULTIPLE} (the models' latent patch), got {tile}")


def _pad_to_grid(image: torch.Tensor, tile: int) -> torch.Tensor:
    """``(1, C, H, W)`` padded at the bottom/right to sides ``tile + k·tile/2`` (reflect; replicate when too small)."""
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    side = [tile + max(0, -(-(s - tile) // (tile // 2))) * (tile // 2) for s in (h, w)]
    pad = (0, side[1] - w, 0, side[0] - h)
    mode = "reflect" if pad[1] < w and pad[3] < h else "replicate"
    return F.pad(image, pad, mode=mode) if any(pad) else image


def sr_image(target, lr: torch.Tensor, tile: int = 64, scale: int = 4, batch: int = 16) -> torch.Tensor:
    """``scale``× super-resolution of an LR image ``(3, h, w)`` in [0, 1] of any size → ``(3, scale·h, scale·w)``.

    ``target`` ``"bicubic"`` (or None): the bicubic upscale alone. Otherwise an SR target (``SRTarget``, ×4): the
    bicubic upscale, reflect-padded at the bottom/right to the tile grid (sides ``tile + k·tile/2``, at least one
    tile), super-resolved on tiles overlapping by half blended with a pyramid window (:func:`tiled`, as
    :func:`sr_tiled`, ``batch`` tiles per forward), then cropped back (docs/design.md §9.4).
    """
    up = bicubic_upscale(lr[None].float(), scale)
    if target is None or target == "bicubic":
        return up[0]
    check_sr_settings(tile, scale)
    h, w = up.shape[-2:]

    def fn(tiles: torch.Tensor) -> torch.Tensor:
        return torch.cat([target.super_resolve(c.to(target.device)).float().cpu() for c in tiles.split(batch)])

    with torch.no_grad():
        out = (tiled(fn, _pad_to_grid(up * 2 - 1, tile), tile) + 1) / 2
    return out[0, :, :h, :w].clamp(0, 1)


def quantise(image: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels (what a PNG of the image holds), staying in [0, 1]."""
    return (image.clamp(0, 1) * 255).round() / 255


def _aligned(sr: torch.Tensor, hr: torch.Tensor, name: str, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SR and HR cropped to their common top-left area when they differ by less than ``2·scale`` pixels per side
    (HR sides that are not multiples of the scale; BasicSR crops HR to ``scale·LR`` the same way); else DataError."""
    from pruneseek.errors import DataError

    (hs, ws), (hh, wh) = sr.shape[-2:], hr.shape[-2:]
    if abs(hs - hh) >= 2 * scale or abs(ws - wh) >= 2 * scale:
        hint = " (an LR image stored at its HR's size? downscale it by the scale first)" \
            if (hs, ws) == (hh * scale, wh * scale) else ""
        raise DataError(f"{name}: the SR image is {hs}×{ws} but its HR is {hh}×{wh}; they must agree within "
                        f"{2 * scale - 1} pixels{hint}")
    h, w = min(hs, hh), min(ws, wh)
    if min(h, w) - 2 * scale < 11:
        raise DataError(f"{name}: {h}×{w} is too small to score (SSIM needs 11 pixels per side after the "
                        f"{scale}-pixel border crop)")
    return sr[..., :h, :w], hr[..., :h, :w]


def image_metrics(sr: torch.Tensor, hr: torch.Tensor, scale: int, lpips=None) -> dict[str, float]:
    """:data:`FOLDER_METRICS` of one SR image against its HR (both ``(3, H, W)`` in [0, 1], one size)."""
    from pruneseek.metrics import gmsd, haarpsi, psnr_y, ssim_y

    sr, hr = sr[None].float(), hr[None].float()
    row = {"psnr_y": float(psnr_y(sr, hr, scale)), "ssim_y": float(ssim_y(sr, hr, scale)),
           "haarpsi": float(haarpsi(sr, hr)), "gmsd": float(gmsd(sr, hr))}
    if lpips is not None:
        with torch.no_grad():
            row["lpips"] = float(lpips(sr, hr).mean())
    return row


def unavailable_metrics() -> dict[str, str]:
    """Metric → why it is not computed here: LPIPS when its weights are not local, and the pyiqa metrics
    (:data:`PYIQA_WEIGHTS`), which pruneseek does not implement and which need pretrained weights."""
    import os

    from pruneseek.losses import LPIPS_FILE, lpips_status

    hub = "$TORCH_HOME/hub" if "TORCH_HOME" in os.environ else "~/.cache/torch/hub"
    out = {}
    ok, why = lpips_status()
    if not ok:
        out["lpips"] = (f"needs {LPIPS_FILE} in {hub}/checkpoints (torch's hub cache) and the lpips package"
                        if LPIPS_FILE in why else why)
    for name, file in PYIQA_WEIGHTS.items():
        where = f"{hub}/clip" if name == "clipiqa" else f"{hub}/pyiqa"
        out[name] = f"needs {file} in {where}; computed by pyiqa, not implemented in pruneseek"
    return out


def _centre_crop_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """``(3, H, W)`` centre-cropped to sides that are multiples of ``multiple``."""
    _, h, w = image.shape
    hh, ww = h // multiple * multiple, w // multiple * multiple
    top, left = (h - hh) // 2, (w - ww) // 2
    return image[:, top : top + hh, left : left + ww]


def folder_items(hr_dir, sr_dir=None, lr_dir=None, with_model: bool = False) -> tuple[str, list[tuple]]:
    """The evaluation's mode and ``(stem, hr_path, other_path or None)`` per image, every file checked readable.

    Mode ``"sr"`` (``sr_dir``: score SR images against HR), ``"lr"`` (a model on ``lr_dir``) or ``"synthetic"``
    (a model on LR made from HR); ``stem`` is normalised (:func:`name_key`). Cheap: ``pruneseek evaluate`` calls
    it before loading a model, so that a mistake in the folders shows first.
    """
    from pruneseek.errors import DataError

    if sr_dir is not None and (with_model or lr_dir is not None):
        raise DataError("--sr scores existing SR images; give it with --hr only (no --model, no --lr)")
    if lr_dir is not None and not with_model:
        raise DataError("--lr LR_DIR needs --model M, the model to run on the LR images")
    if sr_dir is None and not with_model:
        raise DataError("nothing to evaluate: give --sr SR_DIR --hr HR_DIR, or --model M --hr HR_DIR [--lr LR_DIR]")
    if sr_dir is not None or lr_dir is not None:
        mode = "sr" if sr_dir is not None else "lr"
        items = pair_images(hr_dir, sr_dir if mode == "sr" else lr_dir, mode.upper())
    else:
        mode, keyed = "synthetic", _keyed(image_files(hr_dir, "HR", folder_only=True), Path(hr_dir))
        items = [(k, keyed[k], None) for k in sorted(keyed)]
    check_readable([p for item in items for p in item[1:] if p is not None])
    return mode, items


def _sr_and_hr(mode: str, item, model, seed: int, scale: int, tile: int,
               degradation: str = "realesrgan") -> tuple[torch.Tensor, torch.Tensor]:
    """One image's SR (8-bit levels) and HR, aligned (see :func:`_aligned`)."""
    from pruneseek.data import degrade, preset_config

    stem, hr_path, other = item
    hr = read_image(hr_path)
    if mode == "sr":
        sr = read_image(other)
    elif mode == "lr":
        sr = quantise(sr_image(model, read_image(other), tile, scale))
    else:
        if min(hr.shape[-2:]) < scale:  # no LR pixel to synthesise; _aligned refuses anything under 2·scale + 11
            return _aligned(hr, hr, stem, scale)
        hr = _centre_crop_multiple(hr, scale)
        lr = degrade(hr, preset_config(degradation, scale), seed)
        sr = quantise(sr_image(model, lr, tile, scale))
    return _aligned(sr, hr, stem, scale)


def _mean(per_image: dict[str, dict[str, float | None]]) -> tuple[dict[str, float | None], list[str]]:
    """Mean per metric over the images; a metric that is not finite for some image has mean None (with a note)."""
    import math

    rows = list(per_image.values())
    mean, notes = {}, []
    for name in (k for k in FOLDER_METRICS if k in rows[0]):
        values = [r[name] for r in rows]
        bad = [stem for stem, r in per_image.items() if r[name] is None or not math.isfinite(r[name])]
        mean[name] = None if bad else sum(values) / len(values)
        if bad:
            notes.append(f"{name} is not finite (identical or constant images?) for {', '.join(bad[:5])}; no mean")
    return mean, notes


def evaluate_folders(hr_dir: str | Path, sr_dir: str | Path | None = None, lr_dir: str | Path | None = None,
                     model=None, model_name: str | None = None, seed: int = 0, scale: int = 4, tile: int = 64,
                     progress: bool = False, degradation: str | None = None) -> dict[str, Any]:
    """Per-image and mean :data:`FOLDER_METRICS` against the HR images of ``hr_dir`` (docs/design.md §9.4).

    Three modes: ``sr_dir`` — score existing SR images (paired by :func:`pair_images`); ``model`` with
    ``lr_dir`` — super-resolve each LR (:func:`sr_image`); ``model`` alone — LR synthesised from each HR,
    centre-cropped to a multiple of ``scale``, by the ``degradation`` preset with ``seed`` (default: the model's
    own, e.g. ``testbed`` for tsdsr-mini v2; Real-ESRGAN's for bicubic and real TSD-SR). ``model`` is an
    SR target or ``"bicubic"``. Model outputs are rounded to 8 bits (what ``pruneseek upscale`` writes); SR
    and HR that differ by a few pixels are compared on their common top-left area (:func:`_aligned`).
    Returns ``{"mode", "model", "per_image", "mean", "unavailable", "notes", ...}`` (non-finite values as None).
    """
    import math

    from tqdm.auto import tqdm

    mode, items = folder_items(hr_dir, sr_dir, lr_dir, with_model=model is not None)
    degradation = degradation or getattr(model, "degradation", "realesrgan")
    lpips, _ = _lpips_fn()
    per_image: dict[str, dict[str, float | None]] = {}
    for item in tqdm(items, desc="evaluate", disable=not progress, leave=False):
        sr, hr = _sr_and_hr(mode, item, model, seed, scale, tile, degradation)
        row = image_metrics(sr, hr, scale, lpips)
        per_image[item[0]] = {k: (v if math.isfinite(v) else None) for k, v in row.items()} | {
            "size": f"{hr.shape[-2]}x{hr.shape[-1]}"}
    mean, notes = _mean({k: {m: v for m, v in r.items() if m != "size"} for k, r in per_image.items()})
    result = {"mode": mode, "model": model_name or ("bicubic" if model == "bicubic" else None),
              "hr": str(hr_dir), "sr": None if sr_dir is None else str(sr_dir),
              "lr": None if lr_dir is None else str(lr_dir), "seed": seed if mode == "synthetic" else None,
              "degradation": degradation if mode == "synthetic" else None,
              "scale": scale, "tile": tile if mode != "sr" and model != "bicubic" else None,
              "images": len(per_image), "convention": CONVENTION,
              "name_rule": NAME_RULE if mode != "synthetic" else None,
              "per_image": per_image, "mean": mean, "unavailable": unavailable_metrics(), "notes": notes}
    return result


def evaluation_csv(result: dict[str, Any]) -> str:
    """The per-image rows of :func:`evaluate_folders` as CSV (``image``, ``size``, the metrics), then ``mean``."""
    import csv
    import io

    names = list(result["mean"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "size", *names])
    fmt = lambda v: "" if v is None else repr(v)  # full precision, empty for None
    for stem, row in result["per_image"].items():
        writer.writerow([stem, row["size"], *(fmt(row.get(n)) for n in names)])
    writer.writerow(["mean", "", *(fmt(result["mean"][n]) for n in names)])
    return buf.getvalue()


def png_bytes(image: torch.Tensor) -> bytes:
    """An 8-bit RGB PNG of ``(3, H, W)`` in [0, 1] (rounded to the nearest level)."""
    import io

    from PIL import Image

    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def upscale_images(model, inputs: str | Path, out_dir: str | Path, tile: int = 64, scale: int = 4,
                   progress: bool = False) -> list[Path]:
    """Write ``out_dir/<stem>.png`` (8-bit, ``scale``× the input's size, each atomically) for the image file or
    every image of the folder ``inputs``; ``model`` as in :func:`sr_image`. Two inputs with one stem, a non-image
    file or an empty folder is a DataError before anything is written; an unreadable image one before its output."""
    from tqdm.auto import tqdm

    from pruneseek.errors import DataError
    from pruneseek.io import atomic_write_bytes

    files = image_files(inputs, "input")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(f"{stems[f.stem].name} and {f.name} would both be written as {f.stem}.png; rename one")
        stems[f.stem] = f
    check_readable(files)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise DataError(f"--out {out_dir} is a file; give a folder for the upscaled images")
    written = []
    for f in tqdm(files, desc="upscale", disable=not progress, leave=False):
        sr = sr_image(model, read_image(f), tile, scale)
        target = Path(out_dir) / f"{f.stem}.png"
        try:
            written.append(atomic_write_bytes(target, png_bytes(sr)))
        except OSError as exc:
            raise DataError(f"cannot write {target}: {exc}") from None
    return written
