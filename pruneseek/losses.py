"""The search loss for SR targets (docs/design.md §4, TinySR eq. A.3).

    L = λ3 · P(decode(z_stu), x_HR) + λ4 · ‖z_stu − z_tea‖₁,   λ3 = λ4 = 1

P is LPIPS (AlexNet) when its backbone weights are present locally; otherwise a weight-free perceptual
term, GMSD (see :mod:`pruneseek.metrics`). Nothing is ever downloaded: asking for LPIPS explicitly
without its weights is an error that names the file and where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from pruneseek.errors import PruneseekError
from pruneseek.metrics import gmsd

LPIPS_FILE = "alexnet-owt-7be5be79.pth"
PERCEPTUAL_CHOICES = ("auto", "gmsd", "lpips")


def _lpips_weights() -> Path:
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    return torch_home / "hub" / "checkpoints" / LPIPS_FILE


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS can run offline here, and why not."""
    weights = _lpips_weights()
    if not weights.is_file():
        where = "$TORCH_HOME/hub/checkpoints" if "TORCH_HOME" in os.environ else "~/.cache/torch/hub/checkpoints"
        return False, f"LPIPS backbone weights {LPIPS_FILE} not found in {where} (torch's hub cache)"
    try:
        import lpips  # noqa: F401
    except Exception as exc:  # lpips imports torchvision, which may not import beside this torch
        return False, f"the lpips package does not import here ({type(exc).__name__}: {exc})"
    return True, "LPIPS (AlexNet) with local weights"


def perceptual_loss(kind: str = "auto") -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]:
    """``(fn, description)``: ``fn(sr, hr)`` on images in [0, 1] returns one value per image."""
    if kind not in PERCEPTUAL_CHOICES:
        raise PruneseekError(f"unknown perceptual loss {kind!r}; use one of {', '.join(PERCEPTUAL_CHOICES)}")
    if kind in ("auto", "lpips"):
        ok, why = lpips_status()
        if ok:
            import lpips

            net = lpips.LPIPS(net="alex", verbose=False).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            return (lambda sr, hr: net(sr * 2 - 1, hr * 2 - 1).flatten()), why
        if kind == "lpips":
            raise PruneseekError(
                f"--perceptual lpips needs its weights offline: {why}. Put {LPIPS_FILE} into "
                f"{_lpips_weights().parent} (and install the lpips package), or use --perceptual gmsd"
            )
        return gmsd, f"GMSD (weight-free; {why})"
    return gmsd, "GMSD (weight-free)"
