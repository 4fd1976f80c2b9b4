"""Calibration data for a search: HR crops, degraded LR, and the latents of LR, HR and the teacher.

TinySR §A.1 encodes the latents of LR, HR and the teacher's outputs once and caches them; so does
pruneseek. A cache entry is one safetensors file whose name is the SHA-256 of everything it depends
on — the image files (by content hash), crop size, count, degradation settings and seed, the target
model's weights hash — and whose metadata repeats that key in full. A cache written for other settings
has another name; a file whose recorded key differs from the expected one is refused and rebuilt,
never silently reused.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from pruneseek.errors import PruneseekError


def default_cache_dir() -> Path:
    """``$PRUNESEEK_CACHE``, else ``$XDG_CACHE_HOME/pruneseek``, else ``~/.cache/pruneseek``."""
    if os.environ.get("PRUNESEEK_CACHE"):
        return Path(os.environ["PRUNESEEK_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pruneseek"


@dataclass(frozen=True)
class PairSpec:
    """Which training pairs: image files, crops per image, HR crop size, degradation seed and settings."""

    images: tuple[str, ...]
    count: int
    hr_size: int = 64
    seed: int = 0
    degradation: dict = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        files = []
        for path in self.images:
            data = Path(path).read_bytes()
            files.append({"name": Path(path).name, "sha256": hashlib.sha256(data).hexdigest()})
        return {"images": files, "count": self.count, "hr_size": self.hr_size, "seed": self.seed,
                "degradation": self.degradation}


def target_pairs(target, images: Sequence[str | Path], count: int, hr_size: int, seed: int) -> PairSpec:
    """The :class:`PairSpec` of ``count`` crops of ``images`` degraded as ``target`` expects (its preset)."""
    from pruneseek.data import PRESETS

    return PairSpec(images=as_tuple(images), count=count, hr_size=hr_size, seed=seed,
                    degradation=dict(PRESETS[target.degradation]))


def make_pairs(spec: PairSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` (HR, LR) pairs in [0, 1]: HR ``(n, 3, s, s)``, LR ``(n, 3, s/4, s/4)``, deterministic per seed."""
    from pruneseek.data import DegradationConfig, SRPairs

    config = DegradationConfig(**spec.degradation) if spec.degradation else DegradationConfig()
    dataset = SRPairs([Path(p) for p in spec.images], hr_size=spec.hr_size, scale=4, degradation=config, seed=spec.seed)
    pairs = [dataset[i] for i in range(spec.count)]  # item i: image i mod n, its own crop and degradation
    hr = torch.stack([p[0] for p in pairs])
    lr = torch.stack([p[1] for p in pairs])
    return hr, lr


def _weights_id(target) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(target.transformer.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    h.update(target.prompt_embeds.detach().cpu().float().numpy().tobytes())
    h.update(target.pooled_embeds.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def calibration_latents(
    target, spec: PairSpec, cache_dir: Path | None = None, batch: int = 16, progress: bool = True
) -> dict[str, torch.Tensor]:
    """``{"hr", "lr", "z_lr", "z_hr", "z_tea"}`` for ``spec`` under ``target``, from the cache when it matches."""
    from safetensors import safe_open
    from safetensors.torch import save

    from pruneseek.data import bicubic_upscale
    from pruneseek.io import atomic_write_bytes

    key = {"format": "pruneseek.latents/v2", "pairs": spec.key(), "model": target.name, "weights": _weights_id(target)}
    key_text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(key_text.encode()).hexdigest()[:24]
    path = (cache_dir or default_cache_dir()) / f"latents-{target.name}-{digest}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as fh:
                recorded = (fh.metadata() or {}).get("key")
                if recorded == key_text:
                    return {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception:  # an unreadable cache entry is rebuilt below
            pass
        if progress:
            print(f"cache {path} was written for other settings or is damaged; rebuilding it")
    hr, lr = make_pairs(spec)
    device = target.device
    z_lr, z_hr, z_tea = [], [], []
    with torch.no_grad():
        for lo in range(0, len(hr), batch):
            h = hr[lo : lo + batch].to(device) * 2 - 1
            up = bicubic_upscale(lr[lo : lo + batch], 4).to(device) * 2 - 1
            zl = target.encode(up)
            z_lr.append(zl.cpu())
            z_hr.append(target.encode(h).cpu())
            z_tea.append(target.sr_latent(zl).cpu())
    out = {"hr": hr, "lr": lr, "z_lr": torch.cat(z_lr), "z_hr": torch.cat(z_hr), "z_tea": torch.cat(z_tea)}
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in out.items()}, metadata={"key": key_text}))
    return out


def select_images(split: str | None = None, folder: str | Path | None = None) -> list[Path]:
    """The built-in photographs of ``split`` or the images of a user folder."""
    if folder is not None:
        from pruneseek.data import list_images

        return list_images(folder)
    from pruneseek.data import builtin_images

    return [Path(p) for _, p in builtin_images(split or "train")]


def as_tuple(paths: Sequence[Path]) -> tuple[str, ...]:
    return tuple(str(p) for p in paths)


def check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        raise PruneseekError(f"{name} holds NaN or infinite values; check the input images and the model weights")
