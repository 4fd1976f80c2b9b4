"""The fair recovery protocol: every strategy's mask is retrained and measured the same way.

A mask is only as good as the model it becomes after retraining (TinySR Table 2 compares strategies
*after training*). To compare strategies fairly, pruneseek retrains every mask under one protocol:

1. **Student.** A deep copy of the teacher target. Its dropped blocks are skipped with a fixed 0/1
   mask in "skip" mode, which equals physically deleting them (docs/design.md §2, §4). The teacher itself is
   never modified.
2. **What trains.** Every transformer parameter the pruned forward uses: the kept blocks, the patch and
   time/text embedders, the output norm and projection. The dropped blocks are frozen. The fixed
   prompt conditioning (``prompt_embeds``, ``pooled_embeds``) stays fixed, as TSD-SR's default-prompt
   embeddings do.
3. **Loss and data.** The search's loss, :func:`pruneseek.sr_problem.sr_loss` (TinySR eq. A.3:
   λ_l1 · ‖z_stu − z_tea‖₁ + λ_p · P(decode(z_stu), x_HR)), on the search's calibration latents
   (:func:`pruneseek.latents.calibration_latents`), in mini-batches whose order is seeded by
   ``seed`` (:func:`pruneseek.sr_problem.latent_batches`).
4. **Optimiser.** Through the one training loop and step of :mod:`pruneseek.training` (shared with
   ``pruneseek retrain``): AdamW with a cosine learning rate from 1e-3 to 0 over ``steps`` (a constant 3e-4 left
   a recovery-seed spread of 0.1–0.25 dB in PSNR to the teacher, the decay 0.01 dB: results/recovery-probe/),
   weight decay 0, gradient-norm clip 1.0, a fixed number of ``steps``: the same budget, optimiser and seed set
   for every strategy. A step whose loss or
   gradient is not finite is skipped (and counted); more than 10 in a row stop with an error.
5. **Online annealing** (PocketSR §3.2.1, docs/design.md §6; only when ``anneal_steps = T > 0``): during step
   t < T every dropped block runs in "blend" mode with mask value σ_t = max(0, (T − t)/T), so
   y = σ_t·φ(x) + (1 − σ_t)·x (M_P = identity for depth pruning) and the frozen block's contribution
   fades 1 → 0; from step T on the dropped blocks are skipped. The annealing steps are *part of* the
   budget (``steps`` in all, not ``steps + T``), so T ≤ ``steps`` is required. At t = 0, σ = 1: the
   first step's forward is exactly the full model's.
6. **Evaluation** (:func:`pruneseek.evaluation.evaluate`). The held-out crops (grid squares of astronaut, china,
   gravel and coins, two degradation seeds each, half-overlapping 64-pixel tiles: the inputs of ``pruneseek
   teacher eval``), the student running the pruned forward (mask, "skip" mode). Per crop, then averaged: PSNR
   to the teacher's output, PSNR, SSIM, HaarPSI and GMSD against HR, and the mean absolute difference (pixels in
   [0, 1]) to the teacher's output; LPIPS too when its weights are present locally (otherwise the result says why it is
   absent). A mask *before* recovery (zero-shot) is the same evaluation with the teacher's weights:
   :func:`evaluate_zero_shot`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from pruneseek import recipes
from pruneseek.engine.schedules import anneal_sigma, cosine
from pruneseek.errors import RecoveryError
from pruneseek.mask import Mask
from pruneseek.training import Trainer, endless, run_steps

#: Consecutive non-finite steps tolerated before recovery stops.
MAX_NONFINITE = recipes.RECOVERY["max_nonfinite"]



@dataclass
class RecoveryConfig:
    """The recovery budget and optimiser, identical for every strategy of a comparison."""

    steps: int = recipes.RECOVERY["steps"]
    batch: int = recipes.RECOVERY["batch"]
    lr: float = recipes.RECOVERY["lr"]
    weight_decay: float = recipes.RECOVERY["weight_decay"]
    clip_norm: float | None = recipes.RECOVERY["clip_norm"]
    seed: int = 0
    lambda_l1: float = recipes.RECOVERY["lambda_l1"]
    lambda_perceptual: float = recipes.RECOVERY["lambda_perceptual"]
    #: PocketSR online annealing length T (0: cut the dropped blocks at once); part of ``steps``.
    anneal_steps: int = 0
    progress: bool = False
    #: Learning-rate schedule: "cosine" (lr → 0 over ``steps``) or "constant".
    schedule: str = recipes.RECOVERY["schedule"]

    def validate(self) -> "RecoveryConfig":
        def whole(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise RecoveryError(f"recovery {name} must be a whole number ≥ {minimum}, got {value!r}")

        whole("steps", 1)
        whole("batch", 1)
        whole("anneal_steps", 0)
        whole("seed", 0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise RecoveryError(f"recovery lr must be a positive number, got {self.lr!r}")
        if self.schedule not in ("cosine", "constant"):
            raise RecoveryError(f"recovery schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.weight_decay < 0:
            raise RecoveryError(f"recovery weight_decay must be ≥ 0, got {self.weight_decay!r}")
        if self.anneal_steps > self.steps:
            raise RecoveryError(
                f"anneal_steps T = {self.anneal_steps} exceeds the recovery budget of {self.steps} steps: the "
                "annealing steps are part of the budget, and with T > steps σ would never reach 0 before the "
                "dropped blocks are removed for evaluation; use T ≤ steps (or more --recovery-steps)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RecoveryRecord:
    """How a recovery went: the per-step loss, what it cost, what it trained."""

    steps: int
    anneal_steps: int
    loss_history: list[float]
    seconds: float
    #: Forward and backward passes counted in samples (a batch of 4 is 4), as a search's ``cost`` counts them.
    forward_passes: int
    backward_passes: int
    #: Blocks computed × samples (annealing steps compute every block, skip steps only the kept ones).
    block_evaluations: int
    nonfinite_steps: int
    trainable_parameters: int
    frozen_parameters: int
    kept: list[int]
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_mask(mask: Sequence[int] | torch.Tensor | Mask, num_layers: int) -> list[int]:
    """``mask`` as a list of 0/1 ints, one per layer (:class:`~pruneseek.mask.Mask`); a clear error otherwise."""
    return Mask.of(mask, num_layers, error=RecoveryError).tolist()


def step_mask(mask: Sequence[int], step: int, anneal_steps: int) -> tuple[torch.Tensor, str]:
    """The mask row ``(N,)`` and execution mode of recovery step ``step``.

    While t < T the dropped blocks carry σ_t in "blend" mode (kept blocks 1); afterwards the hard 0/1
    mask runs in "skip" mode, so the dropped blocks are not computed.
    """
    hard = torch.tensor(mask, dtype=torch.float32)
    if step < anneal_steps:
        return hard + (1 - hard) * anneal_sigma(step, anneal_steps), "blend"
    return hard, "skip"


def make_student(teacher, mask: Sequence[int]):
    """A deep copy of ``teacher`` whose dropped blocks are frozen and every other transformer parameter trains."""
    mask = check_mask(mask, teacher.num_layers)
    student = copy.deepcopy(teacher)
    for p in student.transformer.parameters():
        p.requires_grad_(True)
    for i, keep in enumerate(mask):
        if not keep:
            for p in student.stack.blocks[i].parameters():  # the masked blocks (FLUX: both stacks, in order)
                p.requires_grad_(False)
    return student


def _stop_error(consecutive: int) -> RecoveryError:
    return RecoveryError(f"recovery hit a non-finite loss or gradient {consecutive} steps in a row; lower the recovery "
                         "learning rate or check the calibration data")


def recover(target, mask: Sequence[int], data: dict[str, torch.Tensor], perceptual, config: RecoveryConfig):
    """Retrain the pruned ``target`` under ``mask`` by the protocol of this module.

    ``data`` holds the calibration latents (``z_lr``, ``z_tea``, ``hr``); ``perceptual(sr, hr)`` is the
    perceptual term. Returns ``(student, record)``: the trained student (a new target; ``target`` is
    unchanged) and a :class:`RecoveryRecord`.
    """
    from pruneseek.sr_problem import latent_batches, sr_loss

    config.validate()
    mask = check_mask(mask, target.num_layers)
    n = int(data["z_lr"].shape[0])
    if n < config.batch:
        raise RecoveryError(f"the calibration data holds {n} crops, fewer than the recovery batch of {config.batch}; "
                            "use more crops or a smaller batch")
    started = time.perf_counter()
    student = make_student(target, mask)
    device = student.device
    params = [p for p in student.transformer.parameters() if p.requires_grad]
    frozen = sum(p.numel() for p in student.transformer.parameters() if not p.requires_grad)
    trainer = Trainer(torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay), params,
                      clip_norm=config.clip_norm, max_nonfinite=MAX_NONFINITE, stop=_stop_error)
    loss_fn = sr_loss(student, perceptual, config.lambda_l1, config.lambda_perceptual)
    lr_at = cosine(config.lr, 0.0, config.steps) if config.schedule == "cosine" else (lambda step: config.lr)
    blocks = 0

    def loss_of(batch: dict, step: int) -> tuple[torch.Tensor, None]:
        nonlocal blocks
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr_at(step)
        row, mode = step_mask(mask, step, config.anneal_steps)
        masks = row.to(device).expand(batch["z_lr"].shape[0], -1)
        blocks += student.stack.computed_blocks(masks, mode) * masks.shape[0]
        return loss_fn(batch, masks, mode), None

    student.transformer.train()
    try:
        history = run_steps(trainer, endless(latent_batches(data, config.batch, config.seed, device),
                                             error=RecoveryError),
                            config.steps, loss_of, desc="recovery", progress=config.progress)
    finally:
        student.transformer.eval()
        for p in student.transformer.parameters():
            p.requires_grad_(False)
    nonfinite = trainer.nonfinite
    record = RecoveryRecord(
        steps=config.steps,
        anneal_steps=config.anneal_steps,
        loss_history=history,
        seconds=time.perf_counter() - started,
        forward_passes=config.steps * config.batch,
        backward_passes=(config.steps - nonfinite) * config.batch,
        block_evaluations=blocks,
        nonfinite_steps=nonfinite,
        trainable_parameters=sum(p.numel() for p in params),
        frozen_parameters=frozen,
        kept=[i for i, v in enumerate(mask) if v],
        config=config.to_dict(),
    )
    return student, record


def recovery_scorer(teacher, data: dict[str, torch.Tensor], perceptual, scored_on, batch: int, lr: float,
                    metric: str = "psnr_teacher"):
    """``score(mask, steps, seed) -> (value, cost)`` for strategies that race masks: recover ``mask`` for
    ``steps`` steps by this module's protocol (``batch``, ``lr``, seed ``seed``) and return its ``metric`` on
    ``scored_on`` (an :class:`~pruneseek.evaluation.EvalSet`, the validation split), signed so that higher is
    better, with the forward/backward passes spent (recovery samples plus evaluation tiles)."""
    from pruneseek.evaluation import METRICS, evaluate

    sign = 1.0 if METRICS[metric][0] == "up" else -1.0
    tiles = sum(((c["up"].shape[-2] - scored_on.tile) // (scored_on.tile // 2) + 1)
                * ((c["up"].shape[-1] - scored_on.tile) // (scored_on.tile // 2) + 1) for c in scored_on.crops)

    def score(mask, steps: int, seed: int) -> tuple[float, dict]:
        student, record = recover(teacher, [int(v) for v in mask], data, perceptual,
                                  RecoveryConfig(steps=steps, batch=batch, lr=lr, seed=seed))
        value = evaluate(student, teacher, [int(v) for v in mask], scored_on)["metrics"][metric]
        return sign * value, {"forward_passes": record.forward_passes + tiles,
                              "backward_passes": record.backward_passes}

    return score
