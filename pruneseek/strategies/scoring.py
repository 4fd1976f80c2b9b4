"""What the score-based baselines share (docs/design.md §6): per-layer statistics read off the full model, and
the rule that turns per-layer scores into a mask.

Scores are "higher = more important". :func:`select_by_scores` removes the lowest-scoring layers, either
anywhere (``scope="global"``, the papers' rule: exactly ``N − M`` layers go) or within each block of the
search space (``scope="space"``: block j keeps its ``s_j`` best layers, so the mask stays in the block
space). Exact ties remove the lower layer index first.

:func:`block_statistic` runs the full model on the calibration batches with an observer on the stack
(:meth:`~pruneseek.engine.MaskedStack.observe`) and averages a per-token statistic of each block's input
``x_i`` and output ``x_{i+1}`` on the primary (image-token) stream: :func:`cosine_statistic` for
ShortGPT's Block Influence, :func:`squared_error_statistic` for FLUX.1-Lite's MSE.

Two base classes hold the rule-based strategies' shared search steps: :class:`ScoreStrategy` (score
every layer, then :func:`select_by_scores`: sensitivity, ShortGPT, FLUX.1-Lite) and
:class:`MaskLossSearch` (try many masks, keep the one of lowest calibration loss, scoring each distinct
mask once with :class:`MaskLosses`: random-min, optuna-tpe).
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pruneseek.spaces import BlockSpace
from pruneseek.errors import StrategyError
from pruneseek.engine import SearchResult
from pruneseek.strategies.base import (
    CostMeter,
    RuleStrategy,
    SearchProblem,
    calibration_batches,
    calibration_loss,
    rule_result,
)

#: ``statistic(x, y) -> (sum, count)``: a sum of per-token (or per-element) values and how many there were.
Statistic = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision activations are widened; float64 stays)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def cosine_statistic(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum over tokens of cos(x_t, y_t) over the feature (last) dimension, and the token count."""
    cos = F.cosine_similarity(_wide(x), _wide(y), dim=-1)
    return cos.double().sum(), cos.numel()


def squared_error_statistic(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of squared differences (y − x)² over every element, and the element count."""
    diff = _wide(y) - _wide(x)
    return (diff * diff).double().sum(), diff.numel()


def block_statistic(
    problem: SearchProblem, batches: Sequence[Any], statistic: Statistic, meter: CostMeter | None = None
) -> tuple[list[float], float]:
    """Per block i, the mean of ``statistic(x_i, x_{i+1})`` over all calibration tokens; and the full loss.

    One forward of the full model per batch (counted by ``meter``); ``x`` is the block's input and ``y``
    its output on the adapter's primary stream (image tokens h for SD3).
    """
    n = problem.stack.num_layers
    adapter = problem.stack.adapter
    sums: list[torch.Tensor | float] = [0.0] * n
    counts = [0] * n

    def observe(index: int, state_in: Any, state_out: Any) -> None:
        total, count = statistic(adapter.primary(state_in).detach(), adapter.primary(state_out).detach())
        sums[index] = sums[index] + total
        counts[index] += count

    with problem.stack.observe(observe):
        full_loss = calibration_loss(problem, np.ones(n, dtype=np.uint8), batches, meter)
    missing = [i for i, c in enumerate(counts) if c == 0]
    if missing:
        raise StrategyError(
            f"blocks {missing} were never run through problem.stack on the calibration data; the problem's "
            "loss_fn must run the model through the stack it names"
        )
    values = [float(s) / c for s, c in zip(sums, counts)]
    if not all(np.isfinite(values)):
        bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
        raise StrategyError(f"the block statistic is not finite for blocks {bad}; check the model for NaN or overflow")
    return values, full_loss


def select_by_scores(
    scores: Sequence[float], space: BlockSpace, scope: str = "global", protect: Iterable[int] = ()
) -> np.ndarray:
    """The 0/1 mask that removes the lowest-scoring layers (module docstring); ``protect`` is never removed."""
    values = np.asarray(scores, dtype=np.float64)
    n = space.num_layers
    if values.shape != (n,):
        raise StrategyError(f"expected {n} per-layer scores for this space, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise StrategyError(f"scores of layers {np.flatnonzero(~np.isfinite(values)).tolist()} are not finite")
    protected = set(int(i) for i in protect)
    if scope == "global":
        groups = [(range(n), n - space.num_kept, "the model")]
    elif scope == "space":
        groups = [(range(b.start, b.stop), b.size - b.keep, f"block {j} ({b.size} keep {b.keep})")
                  for j, b in enumerate(space.blocks)]
    else:
        raise StrategyError(f"scope must be 'global' or 'space', got {scope!r}")
    mask = np.ones(n, dtype=np.uint8)
    for layers, remove, where in groups:
        candidates = sorted((i for i in layers if i not in protected), key=lambda i: (values[i], i))
        if remove > len(candidates):
            raise StrategyError(
                f"cannot remove {remove} layers of {where}: layers {sorted(protected)} are protected "
                "(keep_last); turn keep_last off or keep more layers"
            )
        mask[candidates[:remove]] = 0
    return mask


def scoring_setup(strategy: RuleStrategy, problem: SearchProblem) -> tuple[CostMeter, list]:
    """A fresh cost meter and the strategy's ``score_batches`` calibration batches (the same for every mask)."""
    meter = CostMeter()
    return meter, calibration_batches(problem, strategy.settings["score_batches"])


class ScoreStrategy(RuleStrategy):
    """Scores every layer (higher = more important) and removes the lowest-scoring ones in one shot.

    A subclass gives :meth:`layer_scores`, and :meth:`protected` when some layers must never go.
    """

    def layer_scores(
        self, problem: SearchProblem, batches: list, meter: CostMeter
    ) -> tuple[list[float], list[float]]:  # pragma: no cover - interface
        """Per-layer scores, and the calibration losses computed on the way (the result's loss history)."""
        raise NotImplementedError

    def protected(self, problem: SearchProblem) -> list[int]:
        """Layers never removed (none by default)."""
        return []

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        meter, batches = scoring_setup(self, problem)
        scores, losses = self.layer_scores(problem, batches, meter)
        mask = select_by_scores(scores, problem.space, self.settings["scope"], self.protected(problem))
        return rule_result(self, problem, seed, mask, meter, scores=scores, loss_history=losses)


class MaskLosses:
    """Calibration losses of masks on fixed batches, each distinct mask (by its key) scored once.

    ``history`` holds the losses in the order the masks were first scored.
    """

    def __init__(self, problem: SearchProblem, batches: list, meter: CostMeter):
        self.problem, self.batches, self.meter = problem, batches, meter
        self.losses: dict[Hashable, float] = {}
        self.history: list[float] = []

    def __call__(self, key: Hashable, mask: np.ndarray | Callable[[], np.ndarray]) -> float:
        """The loss of ``mask`` (or of the mask a function makes, called only for a new ``key``)."""
        if key not in self.losses:
            self.losses[key] = calibration_loss(
                self.problem, mask() if callable(mask) else mask, self.batches, self.meter
            )
            self.history.append(self.losses[key])
        return self.losses[key]

    def result(self, strategy: RuleStrategy, seed: int, mask: Any, best_loss: float) -> SearchResult:
        """The search result of the decided ``mask``, with the loss history and how many masks were scored."""
        return rule_result(strategy, self.problem, seed, mask, self.meter, loss_history=self.history,
                           describe={"distinct_masks": len(self.losses), "best_loss": best_loss})


class MaskLossSearch(RuleStrategy):
    """Tries many masks and keeps the one of lowest calibration loss, with no training.

    ``budget`` names the positive-integer setting that says how many masks (or trials) it tries.
    """

    budget: str = ""

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self._positive_int(self.budget)

    def mask_losses(self, problem: SearchProblem) -> MaskLosses:
        """A fresh cost meter and scorer on the strategy's ``score_batches`` calibration batches."""
        meter, batches = scoring_setup(self, problem)
        return MaskLosses(problem, batches, meter)
