"""Train and evaluate the tsdsr-mini teacher (the bundled default target).

Training: fresh random HR crops of the built-in train photographs every step (a fixed pool overfits
within a few hundred steps), LR by the testbed degradation preset (×4; :data:`pruneseek.data.degrade.PRESETS`,
docs/design.md §8), input = LR upscaled 4× bicubic; the transformer learns v so that
z_HR ≈ z_LR − v (one step at t = 1000), with an L1 loss on the latents (the pixel-unshuffle latent is a
permutation of the pixels, so this is the pixel L1). The default-prompt context and pooled vector are
learned with it and then fixed. AdamW, cosine learning rate, gradient clip 1.0.

One training step (:class:`pruneseek.training.Trainer`: clip, non-finite steps skipped and counted), the
learning rate :func:`pruneseek.engine.schedules.cosine`. Evaluation lives in :mod:`pruneseek.evaluation`
(:func:`~pruneseek.evaluation.eval_teacher`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pruneseek import recipes
from pruneseek.data import SRPairs, bicubic_upscale, preset_config
from pruneseek.engine.schedules import cosine
from pruneseek.errors import PruneseekError
from pruneseek.latents import select_images
from pruneseek.targets.mini import build_mini, load_mini, mini_target, save_mini
from pruneseek.training import Trainer


@dataclass
class TeacherConfig:
    """How ``pruneseek teacher train`` trains tsdsr-mini (defaults: :data:`pruneseek.recipes.TEACHER`)."""

    #: Optimisation steps; every step draws ``batch`` fresh crops and degradations.
    steps: int = recipes.TEACHER["steps"]
    batch: int = recipes.TEACHER["batch"]
    #: Peak and final learning rate of the cosine schedule.
    lr: float = recipes.TEACHER["lr"]
    min_lr: float = recipes.TEACHER["min_lr"]
    #: HR crop side in pixels (the LR input is a quarter of it).
    crop_size: int = recipes.TEACHER["crop_size"]
    seed: int = 0
    clip_norm: float = recipes.TEACHER["clip_norm"]
    #: Continue from these weights instead of a fresh initialisation (their record is kept as "previous").
    init: str | None = None
    #: Index of the first training pair (a continuation draws new crops, not the first run's again).
    first_pair: int = 0
    #: Degradation preset of the LR inputs (:data:`pruneseek.data.degrade.PRESETS`); tsdsr-mini's is "testbed".
    degradation: str = recipes.TEACHER["degradation"]


def _stop_error(consecutive: int) -> PruneseekError:
    return PruneseekError(f"teacher training hit a non-finite loss or gradient {consecutive} steps in a row; lower "
                          "--lr and retrain")


def train_teacher(cfg: TeacherConfig, out: Path, command: str = "", progress: bool = True) -> dict:
    """Train tsdsr-mini from scratch and write its weights (with a record of how) to ``out``."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    images = select_images("train")
    pairs = SRPairs(images, hr_size=cfg.crop_size, scale=4, seed=cfg.seed, degradation=preset_config(cfg.degradation))
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
    trainer = Trainer(torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0), params, clip_norm=cfg.clip_norm,
                      stop=_stop_error)
    schedule = cosine(cfg.lr, cfg.min_lr, cfg.steps)
    history: list[float] = []
    bar = tqdm(range(cfg.steps), desc="teacher", disable=not progress)
    for step in bar:
        for group in trainer.optimizer.param_groups:
            group["lr"] = schedule(step)
        batch = [pairs[cfg.first_pair + step * cfg.batch + j] for j in range(cfg.batch)]  # fresh crops every step
        y = torch.stack([b[0] for b in batch]) * 2 - 1
        x = bicubic_upscale(torch.stack([b[1] for b in batch]), 4) * 2 - 1
        loss = (target.sr_latent(target.encode(x)) - target.encode(y)).abs().mean()
        trainer.zero_grad()
        if trainer.step(loss):
            history.append(trainer.value)
        if step % 25 == 0 and history:
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


def command_line() -> str:
    return "pruneseek " + " ".join(sys.argv[1:])
