"""The fair recovery protocol: every strategy's mask is retrained and measured the same way.

A mask is only as good as the model it becomes after retraining (TinySR Table 2 compares strategies
*after training*). To compare strategies fairly, pruneseek retrains every mask under one protocol:

1. **Student.** A deep copy of the teacher target. Its dropped blocks are skipped with a fixed 0/1
   mask in "skip" mode, which equals physically deleting them (SPEC.md §2, §4). The teacher itself is
   never modified.
2. **What trains.** Every transformer parameter the pruned forward uses: the kept blocks, the patch and
   time/text embedders, the output norm and projection. The dropped blocks are frozen. The fixed
   prompt conditioning (``prompt_embeds``, ``pooled_embeds``) stays fixed, as TSD-SR's default-prompt
   embeddings do.
3. **Loss and data.** The search's loss, :func:`pruneseek.sr_problem.sr_loss` (TinySR eq. A.3:
   λ_l1 · ‖z_stu − z_tea‖₁ + λ_p · P(decode(z_stu), x_HR)), on the search's calibration latents
   (:func:`pruneseek.latents.calibration_latents`), in mini-batches whose order is seeded by
   ``seed`` (:func:`pruneseek.sr_problem.latent_batches`).
4. **Optimiser.** AdamW at a constant learning rate, weight decay 0, gradient-norm clip 1.0, a fixed
   number of ``steps``: the same budget, optimiser and seed set for every strategy. A step whose loss or
   gradient is not finite is skipped (and counted); more than 10 in a row stop with an error.
5. **Online annealing** (PocketSR §3.2.1, SPEC.md §6; only when ``anneal_steps = T > 0``): during step
   t < T every dropped block runs in "blend" mode with mask value σ_t = max(0, (T − t)/T), so
   y = σ_t·φ(x) + (1 − σ_t)·x (M_P = identity for depth pruning) and the frozen block's contribution
   fades 1 → 0; from step T on the dropped blocks are skipped. The annealing steps are *part of* the
   budget (``steps`` in all, not ``steps + T``), so T ≤ ``steps`` is required. At t = 0, σ = 1: the
   first step's forward is exactly the full model's.
6. **Evaluation** (:func:`evaluate`). The held-out photographs (astronaut, china, gravel; centre crops,
   degradation seeds, half-overlapping 64-pixel tiles: the inputs of ``pruneseek teacher eval``), the
   student running the pruned forward (mask, "skip" mode). Per crop, then averaged: PSNR, SSIM,
   HaarPSI and GMSD against HR, and the mean absolute difference (pixels in [0, 1]) to the teacher's
   output; LPIPS too when its weights are present locally (otherwise the result says why it is
   absent). A mask *before* recovery (zero-shot) is the same evaluation with the teacher's weights:
   :func:`evaluate_zero_shot`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from pruneseek.errors import PruneseekError
from pruneseek.errors import RecoveryError  # noqa: F401 (raised here; defined with the others)

#: Consecutive non-finite steps tolerated before recovery stops.
MAX_NONFINITE = 10
#: Metric name → (direction, description); "up" means higher is better.
METRICS: dict[str, tuple[str, str]] = {
    "psnr": ("up", "PSNR to HR (dB)"),
    "ssim": ("up", "SSIM to HR (luminance)"),
    "haarpsi": ("up", "HaarPSI to HR"),
    "gmsd": ("down", "GMSD to HR"),
    "l1_teacher": ("down", "L1 to the teacher's output (pixels in [0, 1])"),
    "lpips": ("down", "LPIPS (AlexNet) to HR"),
}



@dataclass
class RecoveryConfig:
    """The recovery budget and optimiser, identical for every strategy of a comparison."""

    steps: int = 200
    batch: int = 4
    #: Measured on tsdsr-mini (24 → 12): 3e-4 brings HaarPSI back to the teacher's within 100 steps; 1e-4 did
    #: not within 300.
    lr: float = 3e-4
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    seed: int = 0
    lambda_l1: float = 1.0
    lambda_perceptual: float = 1.0
    #: PocketSR online annealing length T (0: cut the dropped blocks at once); part of ``steps``.
    anneal_steps: int = 0
    progress: bool = False

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


def check_mask(mask: Sequence[int] | torch.Tensor, num_layers: int) -> list[int]:
    """``mask`` as a list of 0/1 ints, one per layer; a clear error otherwise."""
    values = mask.tolist() if isinstance(mask, torch.Tensor) else list(mask)
    if len(values) != num_layers:
        raise RecoveryError(
            f"the mask has {len(values)} entries but the model has {num_layers} layers; give one 0/1 entry per layer"
        )
    bad = [i for i, v in enumerate(values) if v not in (0, 1)]
    if bad:
        raise RecoveryError(
            f"mask entry {bad[0]} is {values[bad[0]]!r}; a recovery mask holds only 0 (drop) and 1 (keep)"
        )
    if not any(values):
        raise RecoveryError("the mask drops every layer; keep at least one")
    return [int(v) for v in values]


def anneal_sigma(step: int, anneal_steps: int) -> float:
    """PocketSR's annealing coefficient σ_t = max(0, (T − t)/T) (0 when T = 0: no annealing)."""
    if anneal_steps <= 0:
        return 0.0
    return max(0.0, (anneal_steps - step) / anneal_steps)


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
            for p in student.transformer.transformer_blocks[i].parameters():
                p.requires_grad_(False)
    return student


def _endless(one_pass: Callable[[], Iterator]) -> Iterator:
    while True:
        got = False
        for item in one_pass():
            got = True
            yield item
        if not got:  # pragma: no cover - guarded by the size check in recover()
            raise RecoveryError("the calibration data yielded no batch")


def recover(target, mask: Sequence[int], data: dict[str, torch.Tensor], perceptual, config: RecoveryConfig):
    """Retrain the pruned ``target`` under ``mask`` by the protocol of this module.

    ``data`` holds the calibration latents (``z_lr``, ``z_tea``, ``hr``); ``perceptual(sr, hr)`` is the
    perceptual term. Returns ``(student, record)``: the trained student (a new target; ``target`` is
    unchanged) and a :class:`RecoveryRecord`.
    """
    from tqdm.auto import tqdm

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
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = sr_loss(student, perceptual, config.lambda_l1, config.lambda_perceptual)
    batches = _endless(latent_batches(data, config.batch, config.seed, device))
    history: list[float] = []
    nonfinite = consecutive = blocks = 0
    student.transformer.train()
    bar = tqdm(range(config.steps), desc="recovery", disable=not config.progress, leave=False)
    try:
        for step in bar:
            batch = next(batches)
            row, mode = step_mask(mask, step, config.anneal_steps)
            masks = row.to(device).expand(batch["z_lr"].shape[0], -1)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch, masks, mode)
            value = float(loss.detach())
            history.append(value)
            blocks += student.stack.computed_blocks(masks, mode) * masks.shape[0]
            finite = math.isfinite(value)
            if finite:
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(
                    [p for p in params if p.grad is not None], config.clip_norm or float("inf")
                )
                finite = bool(torch.isfinite(norm))
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                nonfinite += 1
                consecutive += 1
                if consecutive > MAX_NONFINITE:
                    raise RecoveryError(
                        f"recovery hit a non-finite loss or gradient {consecutive} steps in a row (up to step {step}); "
                        "lower the recovery learning rate or check the calibration data"
                    )
                continue
            consecutive = 0
            optimizer.step()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
    finally:
        bar.close()
        student.transformer.eval()
        for p in student.transformer.parameters():
            p.requires_grad_(False)
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


def eval_set(teacher, crop: int = 192, seeds: Sequence[int] = tuple(range(6)), tile: int = 64) -> EvalSet:
    """The held-out crops of ``pruneseek teacher eval`` and the full teacher's SR of each."""
    from pruneseek.teacher import held_out_crops, sr_tiled

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
    from pruneseek.teacher import sr_tiled

    mask = check_mask(mask, student.num_layers)
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
