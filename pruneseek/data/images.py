"""Image files → training pairs: HR random crops and their degraded ×4 LR (docs/design.md §7, TinySR §A.1)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pruneseek.data.degrade import DegradationConfig, degrade
from pruneseek.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")



def rgb_pixels(im) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from a PIL image: 16-bit gray scaled by 65535 (PIL's ``convert('RGB')``
    would clip it at 255), everything else (palette, gray, alpha, CMYK, 48-bit RGB read as 8-bit) via RGB."""
    if im.mode.startswith("I;16") or im.mode == "I":
        gray = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def open_image(path: str | Path):
    """``Image.open(path)`` for a with-block, refusing a decompression bomb (a header declaring more pixels than
    PIL's limit) as an error rather than a warning."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def read_errors() -> tuple[type[BaseException], ...]:
    """What PIL raises for a file it cannot read (a bomb's warning is made an error by :func:`open_image`)."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning)


def load_image(path: str | Path) -> torch.Tensor:
    """An image file as ``(3, H, W)`` float in [0, 1], upright (EXIF orientation applied); gray is replicated,
    alpha dropped, 16-bit gray kept at full range."""
    from PIL import ImageOps

    path = Path(path)
    try:
        with open_image(path) as im:
            arr = rgb_pixels(ImageOps.exif_transpose(im))
    except read_errors() as exc:
        raise DataError(f"cannot read image {path}: {exc}; remove it from the folder or convert it to PNG/JPEG") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def list_images(folder: str | Path) -> list[Path]:
    """PNG/JPEG files in ``folder`` (sorted); a clear error for a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist; give --data a folder of PNG/JPEG images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"data folder {folder} holds no PNG or JPEG images")
    return files


def bicubic_upscale(lr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """Bicubic ×scale (``align_corners=False``, as TSD-SR), clamped to [0, 1]; ``(B, 3, h, w)`` or ``(3, h, w)``."""
    batched = lr.dim() == 4
    x = lr if batched else lr[None]
    out = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return out if batched else out[0]


def pad_to(img: torch.Tensor, side: int) -> torch.Tensor:
    """``(C, H, W)`` padded at the bottom/right to at least ``side × side``: reflected (again and again while the
    image is under half the side), replicated when a side is a single pixel (nothing to reflect)."""
    while img.shape[-2] < side or img.shape[-1] < side:
        h, w = img.shape[-2:]
        need_w, need_h = max(0, side - w), max(0, side - h)
        if min(h, w) == 1:
            return F.pad(img[None], (0, need_w, 0, need_h), mode="replicate")[0]
        img = F.pad(img[None], (0, min(need_w, w - 1), 0, min(need_h, h - 1)), mode="reflect")[0]
    return img


class SRPairs:
    """Deterministic (HR crop, LR) pairs: item i uses image i mod n, a crop and a degradation drawn from (seed, i).

    Images smaller than the crop are reflect-padded up to it (:func:`pad_to`).
    """

    def __init__(
        self,
        images: Sequence[str | Path],
        hr_size: int = 64,
        scale: int = 4,
        degradation: DegradationConfig | None = None,
        seed: int = 0,
    ):
        if not images:
            raise DataError("no images given to build training pairs from")
        if hr_size % scale:
            raise DataError(f"the HR crop size {hr_size} must be a multiple of the scale {scale}")
        self.paths = [Path(p) for p in images]
        self.hr_size, self.scale, self.seed = hr_size, scale, seed
        self.degradation = degradation or DegradationConfig(scale=scale)
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, k: int) -> torch.Tensor:
        if k not in self._cache:
            self._cache[k] = load_image(self.paths[k])
        return self._cache[k]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, i])
        img = self._image(i % len(self.paths))
        _, h, w = img.shape
        s = self.hr_size
        if h < s or w < s:
            img = pad_to(img, s)
            _, h, w = img.shape
        top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        hr = img[:, top : top + s, left : left + s].contiguous()
        if rng.random() < 0.5:
            hr = hr.flip(-1)
        return hr, degrade(hr, self.degradation, rng)
