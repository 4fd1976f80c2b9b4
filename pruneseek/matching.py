"""Output matching: the calibration objective for models that are not TSD-SR (docs/design.md §11.2).

A pruned model should do what the full model does. For a model family (:mod:`pruneseek.targets.family`) the
search therefore matches the unpruned model's own output on calibration inputs: the predicted velocity or
noise of a diffusion transformer (mean squared error), the next-token distribution of a language model (KL from
the full model's). The full model's outputs are computed once (:func:`calibration`); every strategy then scores
and trains masks against them through the same :class:`~pruneseek.strategies.base.SearchProblem`.

Inputs are synthetic by default (seeded latents, timesteps, labels or embeddings; random token ids) or the
user's (``--data``: :mod:`pruneseek.matching_data`); the mask file's notes say which.
``race`` scores candidates with :func:`matching_scorer`: a short recovery of the pruned model against the same
targets (AdamW, cosine learning rate, every parameter the pruned forward uses) and its loss on a validation
part of the calibration inputs that the search and the recovery never train on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from pruneseek.errors import PruneseekError
from pruneseek.spaces import BlockSpace
from pruneseek.strategies.base import SearchProblem

#: The share of calibration samples held out to score race candidates (at least one).
VALIDATION_SHARE = 0.25


@dataclass
class Calibration:
    """Calibration inputs (``samples``: per sample; ``shared``: the same for every batch), the full model's
    outputs for them (``targets``) and where the inputs came from (``note``)."""

    samples: dict[str, torch.Tensor]
    shared: dict[str, torch.Tensor]
    targets: torch.Tensor
    note: str

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def batch(self, index: torch.Tensor, device) -> dict[str, Any]:
        out = {k: v[index].to(device) for k, v in self.samples.items()}
        out.update({k: v.to(device) for k, v in self.shared.items()})
        out["target"] = self.targets[index].to(device)
        return out

    def subset(self, index: torch.Tensor) -> "Calibration":
        return Calibration({k: v[index] for k, v in self.samples.items()}, self.shared, self.targets[index], self.note)

    def split(self, share: float = VALIDATION_SHARE) -> tuple["Calibration", "Calibration"]:
        """``(train, validation)``: the last ``share`` of the samples (at least one) is validation."""
        n = len(self)
        held = max(1, int(round(n * share)))
        if n - held < 1:
            raise PruneseekError(f"{n} calibration samples cannot be split into training and validation; use more")
        return self.subset(torch.arange(n - held)), self.subset(torch.arange(n - held, n))


@dataclass
class CalibrationSpec:
    """What a family search calibrated on, recorded as the SR searches' data spec is (images, count, size)."""

    images: list
    count: int
    hr_size: int
    note: str


def inputs_of(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "target"}


@torch.no_grad()
def full_outputs(target, samples: dict, shared: dict, chunk: int = 8) -> torch.Tensor:
    """The unmasked model's outputs for every sample, in chunks."""
    n = next(iter(samples.values())).shape[0]
    device = target.device
    parts = []
    for lo in range(0, n, chunk):
        batch = {k: v[lo:lo + chunk].to(device) for k, v in samples.items()}
        batch.update({k: v.to(device) for k, v in shared.items()})
        parts.append(target.forward(batch).float().cpu())
    return torch.cat(parts)


def calibration(target, count: int, seed: int, size: int, data=None) -> Calibration:
    """``count`` calibration samples (the user's ``data`` or synthetic at ``size``) and the full model's outputs."""
    if data is not None:
        from pruneseek.matching_data import user_inputs

        samples, shared, note = user_inputs(target, data, count, seed, size)
    else:
        samples, shared = target.family.synthetic_inputs(target.model, count, seed, size)
        note = target.family.synthetic_note(target.model, size)
    targets = full_outputs(target, samples, shared)
    if not torch.isfinite(targets).all():
        raise PruneseekError(f"the full {target.name} model gives non-finite outputs on the calibration inputs; "
                             "check the model's weights")
    return Calibration(samples, shared, targets, note)


def calibration_batches(calib: Calibration, batch_size: int, seed: int, device) -> Callable[[], Iterator]:
    """A callable returning a fresh pass of shuffled mini-batches (seeded order, the last partial batch dropped)."""
    if len(calib) < batch_size:
        raise PruneseekError(f"{len(calib)} calibration samples are fewer than the batch of {batch_size}; "
                             "use more (--crops) or a smaller --batch")
    generator = torch.Generator().manual_seed(seed)

    def one_pass() -> Iterator[dict]:
        order = torch.randperm(len(calib), generator=generator)
        for lo in range(0, len(calib) - batch_size + 1, batch_size):
            yield calib.batch(order[lo:lo + batch_size], device)

    return one_pass


def matching_loss(target) -> Callable[[dict, torch.Tensor, str], torch.Tensor]:
    """``loss_fn(batch, masks, mode)``: the family's loss between the masked output and the full model's."""

    def loss_fn(batch: dict, masks: torch.Tensor, mode: str) -> torch.Tensor:
        return target.family.loss(target.forward(inputs_of(batch), masks, mode), batch["target"])

    return loss_fn


def matching_problem(target, calib: Calibration, space: BlockSpace, steps: int, batch_size: int, seed: int,
                     topology: Any = "pairs", k: int = 1) -> SearchProblem:
    """The search problem of a family model: its gated stack, the matching loss, the calibration batches."""
    return SearchProblem(
        model=target.model, stack=target.stack, loss_fn=matching_loss(target),
        batches=calibration_batches(calib, batch_size, seed, target.device), space=space, topology=topology, k=k,
        device=target.device, steps=steps, batch_size=lambda batch: batch["target"].shape[0],
        lora_targets=list(target.lora_targets) or None,
    )


def recover(target, mask: list[int], calib: Calibration, steps: int, batch_size: int, lr: float, seed: int):
    """A copy of ``target`` trained ``steps`` steps under ``mask`` (skip mode) to match the full model's outputs:
    every parameter except the dropped blocks', AdamW, cosine learning rate ``lr`` → 0, clip 1.0."""
    from pruneseek.engine.schedules import cosine
    from pruneseek.training import Trainer, endless, run_steps

    from pruneseek.recovery import make_student

    student = make_student(target, mask)
    params = [p for p in student.model.parameters() if p.requires_grad]
    trainer = Trainer(torch.optim.AdamW(params, lr=lr, weight_decay=0.0), params, clip_norm=1.0)
    lr_at = cosine(lr, 0.0, steps)
    loss_fn = matching_loss(student)
    row = torch.tensor(mask, dtype=torch.float32, device=student.device)

    def loss_of(batch: dict, step: int):
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr_at(step)
        return loss_fn(batch, row.expand(batch["target"].shape[0], -1), "skip"), None

    student.model.train()
    try:
        run_steps(trainer, endless(calibration_batches(calib, batch_size, seed, student.device), error=PruneseekError),
                  steps, loss_of, desc="recovery", progress=False)
    finally:
        student.model.eval().requires_grad_(False)
    return student


@torch.no_grad()
def validation_loss(target, mask: list[int], calib: Calibration) -> float:
    row = torch.tensor(mask, dtype=torch.float32, device=target.device)
    batch = calib.batch(torch.arange(len(calib)), target.device)
    return float(matching_loss(target)(batch, row.expand(len(calib), -1), "skip"))


def matching_scorer(target, train: Calibration, validation: Calibration, batch_size: int, lr: float):
    """``score(mask, steps, seed) -> (−validation loss after a short recovery, cost)`` for ``race``."""

    def score(mask, steps: int, seed: int) -> tuple[float, dict]:
        mask = [int(v) for v in mask]
        student = recover(target, mask, train, steps, min(batch_size, len(train)), lr, seed)
        return -validation_loss(student, mask, validation), {
            "forward_passes": steps * batch_size + len(validation), "backward_passes": steps * batch_size}

    return score
