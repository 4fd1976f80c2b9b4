"""``snapfusion``: greedy removal by loss rise per latency saved (docs/design.md §6, "metric").

Source: Y. Li, H. Wang, Q. Jin, J. Hu, P. Chemerys, Y. Fu, Y. Wang, S. Tulyakov, J. Ren, "SnapFusion:
Text-to-Image Diffusion Model on Mobile Devices within Two Seconds", NeurIPS 2023, §3.2 (robust training
and architecture evolving: actions ranked by Δmetric / Δlatency, latency from a per-block lookup table
measured on the device). The "metric"-family baseline of TinySR Table 2.

Rule. Start from the full model. At each iteration, for every block i still kept (with ``scope="space"``:
only in blocks that still keep more than their ``s_j``), score its removal by

    r_i = (L(m − e_i) − L(m)) / latency_i

with L the calibration loss (no training, the same calibration batches throughout) and latency_i block
i's entry in the lookup table; remove the block with the smallest r_i; repeat until ``N − M`` blocks are
gone (``scope="global"``, the paper's rule) or every block j keeps ``s_j`` (``scope="space"``).

The latency table is measured on the device (``latency`` unset): each block's forward is timed on the
first calibration batch with torch forward hooks (synchronising CUDA around it), ``latency_repeats``
full forwards, the median per block; the first forward is a warm-up and not timed. Give ``latency`` (N
positive numbers, any unit) to use a table of your own (tests do).

Robust training (optional, ``robust_steps``, default 0 = off). After each removal SnapFusion trains the
network so that it stays robust to removing blocks. Here that is ``robust_steps`` steps of LoRA training
(``lora_rank``, ``lora_alpha``, AdamW at ``weight_lr``, weight decay 0, grad-norm clip 1) on the problem's
loss and training batches, in skip mode, under the current mask with every kept block additionally
skipped with probability ``robust_skip_prob`` (one draw per step, shared by the batch). SnapFusion
fine-tunes the whole UNet; LoRA (``pruneseek.training.lora_adapters``) is the cheaper form used here, and its
adapters are removed when the search ends, so the model comes back unchanged: the training only shapes
the greedy decisions. The skip probability is not stated in the paper; 0.1 is this project's choice.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pruneseek.engine import SearchResult
from pruneseek.errors import StrategyError
from pruneseek.strategies.registry import register
from pruneseek.training import Trainer, linear_targets, lora_adapters
from pruneseek.strategies.base import (
    SCORE_DEFAULTS,
    CostMeter,
    RuleStrategy,
    SearchProblem,
    batch_size_of,
    calibration_batches,
    calibration_loss,
    endless_batches,
    problem_device,
    rule_result,
)


def measure_latency(problem: SearchProblem, batch: Any, repeats: int, meter: CostMeter | None = None) -> list[float]:
    """Seconds per block forward on ``batch``: median of ``repeats`` timed full forwards (after one warm-up)."""
    blocks = problem.stack.blocks
    device = problem_device(problem)
    cuda = device.type == "cuda"
    times: list[list[float]] = [[] for _ in blocks]
    started: dict[int, float] = {}
    timing = [False]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def before(i: int):
        def hook(module, args):
            if timing[0]:
                sync()
                started[i] = time.perf_counter()

        return hook

    def after(i: int):
        def hook(module, args, output):
            if timing[0] and i in started:
                sync()
                times[i].append(time.perf_counter() - started.pop(i))

        return hook

    handles = []
    try:
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(before(i)))
            handles.append(block.register_forward_hook(after(i)))
        full = np.ones(len(blocks), dtype=np.uint8)
        for r in range(repeats + 1):
            timing[0] = r > 0
            calibration_loss(problem, full, [batch], meter)
    finally:
        for h in handles:
            h.remove()
    missing = [i for i, t in enumerate(times) if not t]
    if missing:
        raise StrategyError(
            f"blocks {missing} never ran during the latency measurement; the problem's loss_fn must run the "
            "model's blocks (problem.stack.blocks)"
        )
    return [statistics.median(t) for t in times]


def check_latency(table: Sequence[float], n: int) -> list[float]:
    """A latency table of ``n`` positive finite numbers, or a StrategyError that says what is wrong."""
    if not isinstance(table, (list, tuple)) or len(table) != n:
        raise StrategyError(f"snapfusion: latency must be a list of {n} numbers (one per block), got {table!r}")
    values = []
    for i, v in enumerate(table):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise StrategyError(f"snapfusion: latency[{i}] must be a positive number, got {v!r}")
        values.append(float(v))
    return values


def removal_candidates(mask: np.ndarray, space, scope: str) -> list[int]:
    """Kept layers that may still go: any (global, while more than M are kept) or per block above s_j."""
    if scope == "global":
        return [int(i) for i in np.flatnonzero(mask)] if mask.sum() > space.num_kept else []
    out = []
    for b in space.blocks:
        layers = range(b.start, b.stop)
        if sum(int(mask[i]) for i in layers) > b.keep:
            out.extend(i for i in layers if mask[i])
    return out


def greedy_choice(current: float, losses: dict[int, float], latency: Sequence[float]) -> tuple[int, float]:
    """The candidate with the smallest Δloss / Δlatency (ties: lower index) and that ratio."""
    ratios = {i: (loss - current) / latency[i] for i, loss in losses.items()}
    best = min(ratios, key=lambda i: (ratios[i], i))
    return best, ratios[best]


@register("snapfusion")
class SnapFusion(RuleStrategy):
    """Greedy architecture evolving: remove the block with the least loss rise per second saved, repeat."""

    source = (
        "Li et al. SnapFusion: Text-to-Image Diffusion Model on Mobile Devices within Two Seconds. NeurIPS 2023 "
        "(§3.2: robust training, architecture evolving by Δmetric/Δlatency with a latency lookup table)"
    )
    defaults = {
        **SCORE_DEFAULTS,
        "latency": None,
        "latency_repeats": 5,
        "robust_steps": 0,
        "robust_skip_prob": 0.1,
        "lora_rank": 8,
        "lora_alpha": 16.0,
        "weight_lr": 1e-4,
    }

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self._positive_int("latency_repeats")
        steps = self.settings["robust_steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise StrategyError(f"snapfusion: robust_steps must be a whole number ≥ 0, got {steps!r}")
        p = self.settings["robust_skip_prob"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise StrategyError(f"snapfusion: robust_skip_prob must lie in [0, 1), got {p!r}")

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        s = self.settings
        meter = CostMeter()
        space = problem.space
        n = space.num_layers
        batches = calibration_batches(problem, s["score_batches"])
        if s["latency"] is None:
            latency = measure_latency(problem, batches[0], s["latency_repeats"], meter)
            measured = True
        else:
            latency = check_latency(s["latency"], n)
            measured = False
        trainer = RobustTrainer(problem, s, seed, meter) if s["robust_steps"] else None
        mask = np.ones(n, dtype=np.uint8)
        trajectory: list[dict] = []
        try:
            current = calibration_loss(problem, mask, batches, meter)
            history = [current]
            to_remove = n - space.num_kept
            bar = tqdm(total=to_remove, desc=self.name, disable=not problem.progress, leave=False)
            with bar:
                while True:
                    candidates = removal_candidates(mask, space, s["scope"])
                    if not candidates:
                        break
                    losses = {}
                    for i in candidates:
                        trial = mask.copy()
                        trial[i] = 0
                        losses[i] = calibration_loss(problem, trial, batches, meter)
                    best, ratio = greedy_choice(current, losses, latency)
                    mask[best] = 0
                    trajectory.append({
                        "step": len(trajectory) + 1,
                        "removed": best,
                        "delta_loss": losses[best] - current,
                        "latency": latency[best],
                        "ratio": ratio,
                        "loss": losses[best],
                        "marginals": [float(v) for v in mask],
                    })
                    current = losses[best]
                    history.append(current)
                    bar.update(1)
                    if trainer is not None and removal_candidates(mask, space, s["scope"]):
                        trainer.train(mask, s["robust_steps"])
                        current = calibration_loss(problem, mask, batches, meter)
                        history.append(current)
        finally:
            if trainer is not None:
                trainer.close()
        describe = {"latency_measured": measured, "latency_table": list(latency)}
        steps = trainer.steps_done if trainer is not None else 0
        return rule_result(self, problem, seed, mask, meter, loss_history=history, steps=steps,
                           trajectory=trajectory, describe=describe)


class RobustTrainer:
    """SnapFusion's robust training in LoRA form (module docstring): blocks stochastically skipped.

    The adapters live from construction to :meth:`close`; each step is :class:`pruneseek.training.Trainer`'s.
    """

    def __init__(self, problem: SearchProblem, settings: dict, seed: int, meter: CostMeter):
        self.problem = problem
        self.skip_prob = float(settings["robust_skip_prob"])
        self.meter = meter
        self.generator = torch.Generator().manual_seed(int(seed))
        self.stream = endless_batches(problem)
        self.steps_done = 0
        model = problem.model
        targets = problem.lora_targets or linear_targets(model, problem.stack.blocks)
        if not targets:
            raise StrategyError("snapfusion robust training needs linear layers inside the blocks for LoRA; "
                                "set robust_steps = 0")
        self.adapters = contextlib.ExitStack()
        self.params = self.adapters.enter_context(
            lora_adapters(model, targets, settings["lora_rank"], settings["lora_alpha"], seed=seed))
        self.trainer = Trainer(torch.optim.AdamW(self.params, lr=settings["weight_lr"], weight_decay=0.0),
                               self.params, clip_norm=1.0, stop=self._stop)

    @staticmethod
    def _stop(consecutive: int) -> StrategyError:
        return StrategyError(f"snapfusion robust training: the loss or its gradient was not finite {consecutive} "
                             "steps in a row; lower weight_lr or set robust_steps = 0")

    def train(self, mask: np.ndarray, steps: int) -> None:
        device = problem_device(self.problem)
        keep = torch.as_tensor(mask, dtype=torch.float32)
        for _ in range(steps):
            batch = next(self.stream)
            b = batch_size_of(self.problem, batch)
            survive = (torch.rand(keep.shape, generator=self.generator) >= self.skip_prob).float()
            row = (keep * survive).to(device)
            self.trainer.zero_grad()
            loss = self.problem.loss_fn(batch, row.expand(b, -1), "skip")
            self.meter.forward(b, int(row.sum()))
            self.steps_done += 1
            if not loss.requires_grad:  # every kept block skipped this step: nothing to train
                continue
            _, finite = self.trainer.read(loss)
            if finite:
                self.meter.backward(b)
            self.trainer.apply(loss, finite)

    def close(self) -> None:
        self.adapters.close()
