"""A depth-pruning search problem for a one-step SR target (docs/design.md §4, TinySR eq. A.3).

The student is the target itself run under the sampled masks; the teacher's output latents ``z_tea``
are precomputed (:mod:`pruneseek.latents`). The loss per batch is

    λ4 · mean |z_stu − z_tea|  +  λ3 · mean P((decode(z_stu) + 1) / 2, x_HR)

with P the perceptual term of :func:`pruneseek.losses.perceptual_loss`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch

from pruneseek.spaces import BlockSpace
from pruneseek.strategies.base import SearchProblem


def latent_batches(data: dict[str, torch.Tensor], batch_size: int, seed: int, device) -> Callable[[], Iterator]:
    """A callable returning a fresh pass of shuffled mini-batches; the order is seeded and reproducible."""
    generator = torch.Generator().manual_seed(seed)
    n = data["z_lr"].shape[0]

    def one_pass() -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(n, generator=generator)
        for lo in range(0, n - batch_size + 1, batch_size):
            idx = order[lo : lo + batch_size]
            yield {k: data[k][idx].to(device) for k in ("z_lr", "z_tea", "hr")}

    return one_pass


def sr_loss(target, perceptual, lambda_l1: float = 1.0, lambda_perceptual: float = 1.0):
    """``loss_fn(batch, masks, mode)`` for the engine."""

    def loss_fn(batch: dict[str, torch.Tensor], masks: torch.Tensor, mode: str) -> torch.Tensor:
        z_stu = target.sr_latent(batch["z_lr"], masks, mode)
        loss = lambda_l1 * (z_stu - batch["z_tea"]).abs().mean()
        if lambda_perceptual:
            image = (target.decode(z_stu) + 1) / 2
            loss = loss + lambda_perceptual * perceptual(image, batch["hr"]).mean()
        return loss

    return loss_fn


def sr_search_problem(
    target,
    data: dict[str, torch.Tensor],
    space: BlockSpace,
    steps: int,
    batch_size: int,
    seed: int,
    perceptual,
    topology: Any = "pairs",
    k: int = 1,
    lambda_l1: float = 1.0,
    lambda_perceptual: float = 1.0,
) -> SearchProblem:
    device = target.device
    return SearchProblem(
        model=target.transformer,
        stack=target.stack,
        loss_fn=sr_loss(target, perceptual, lambda_l1, lambda_perceptual),
        batches=latent_batches(data, batch_size, seed, device),
        space=space,
        topology=topology,
        k=k,
        device=device,
        steps=steps,
        batch_size=lambda batch: batch["z_lr"].shape[0],
        lora_targets=list(target.lora_targets) or None,
    )
