"""The strategy interface, the search problem every strategy receives, and what strategies share.

Shared plumbing for the baselines (docs/design.md §6: "all must share one interface and the same calibration
data"): :func:`calibration_batches` fixes the data every mask is scored on, :func:`calibration_loss`
scores a 0/1 mask on it without training, and :class:`CostMeter` counts what a search spent (forward and
backward passes in samples, block evaluations, seconds) for :attr:`SearchResult.cost`.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from pruneseek.engine import (
    Checkpointing,
    DataParallel,
    MaskedStack,
    MaskLearner,
    SearchConfig,
    SearchResult,
    infer_batch_size,
    run_search,
)
from pruneseek import recipes
from pruneseek.errors import StrategyError
from pruneseek.mask import Mask
from pruneseek.spaces import BlockSpace
from pruneseek.training import endless


@dataclass
class SearchProblem:
    """What to search: a model, its masked block stack, a loss, data and a search space.

    ``loss_fn(batch, masks, mode)`` runs the model under ``masks`` ``(batch, N)`` (0/1, straight-through)
    in ``mode`` ("blend" | "skip") and returns a scalar loss. ``batches()`` returns a fresh iterator of
    batches (called again when one runs out). ``topology`` and ``k`` define TinySR's transfer graph.
    ``steps`` is the optimisation budget shared by every strategy.
    """

    model: nn.Module
    stack: MaskedStack
    loss_fn: Callable[[Any, torch.Tensor, str], torch.Tensor]
    batches: Callable[[], Iterator]
    space: BlockSpace
    topology: Any = "pairs"
    k: int = 1
    device: torch.device | str | None = None
    steps: int = 100
    batch_size: Callable[[Any], int] | None = None
    #: Learned strategies only: save (and resume) the search loop's state (:mod:`pruneseek.engine.checkpoint`).
    checkpointing: Checkpointing | None = None
    #: Learned strategies only: data-parallel processes; ``batches()`` then yields global batches.
    parallel: DataParallel | None = None
    #: The target's LoRA target module names (peft suffix match); ``None``: every linear layer of the blocks.
    #: A strategy's own ``lora_targets`` setting, when given, wins.
    lora_targets: Sequence[str] | None = None
    #: Show progress bars (a display option of the run, not a strategy setting).
    progress: bool = True
    #: Float16 autocast: the learned search scales the loss (``torch.amp.GradScaler``) against underflow.
    loss_scaling: bool = False
    #: ``score(mask, steps, seed) -> (value, cost)``: recover ``mask`` for ``steps`` steps and score it on the
    #: validation split (higher is better; ``cost`` holds forward/backward passes). Supplied by the experiment
    #: layer (:func:`pruneseek.recovery.recovery_scorer`) for strategies that race masks (``race``).
    candidate_score: Callable[[Any, int, int], tuple[float, dict]] | None = None


class Strategy:
    """A depth-pruning strategy: ``search(problem, seed) -> SearchResult``.

    Subclasses set ``source`` (the paper) and ``defaults`` (hyperparameters); an instance's ``settings``
    are the defaults with the constructor's overrides. Unknown setting names are errors.
    """

    name: ClassVar[str] = ""
    source: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **settings: Any):
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise StrategyError(
                f"strategy {self.name!r} has no setting(s) {', '.join(unknown)}; its settings are "
                f"{', '.join(sorted(self.defaults))}"
            )
        self.settings: dict[str, Any] = {**copy.deepcopy(self.defaults), **settings}

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:  # pragma: no cover - interface
        raise NotImplementedError

    def recovery_overrides(self) -> dict[str, Any]:
        """Settings this strategy asks of the recovery training that follows the search (none by default).

        PocketSR's online annealing (``annealing``) returns ``{"anneal_steps": T}``: the dropped blocks are
        blended out over T steps instead of cut at once.
        """
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    # ----- setting checks shared by subclasses ---------------------------------------------------------
    def _positive_int(self, key: str) -> int:
        value = self.settings[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise StrategyError(f"strategy {self.name!r}: setting {key} must be a positive whole number, got {value!r}")
        return value

    def _choice(self, key: str, choices: Sequence[str]) -> str:
        value = self.settings[key]
        if value not in choices:
            raise StrategyError(f"strategy {self.name!r}: setting {key} must be one of {list(choices)}, got {value!r}")
        return value


# ----- calibration data, the calibration loss and the cost of a search ---------------------------------------


def calibration_batches(problem: SearchProblem, count: int) -> list:
    """The first ``count`` batches of one pass of ``problem.batches()``: the fixed data every mask is scored on.

    Fewer when one pass holds fewer batches (then the whole pass). The list is kept, so every mask a
    strategy scores sees exactly the same samples.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise StrategyError(f"the number of calibration batches must be a positive whole number, got {count!r}")
    out = []
    for batch in problem.batches():
        out.append(batch)
        if len(out) == count:
            break
    if not out:
        raise StrategyError("the problem's batches() yielded no batches; give it calibration data")
    return out


def endless_batches(problem: SearchProblem) -> Iterator:
    """Batches without end: ``problem.batches()`` is called again whenever a pass runs out."""
    return endless(problem.batches, error=StrategyError)


def problem_device(problem: SearchProblem) -> torch.device:
    if problem.device is not None:
        return torch.device(problem.device)
    first = next(iter(problem.model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def batch_size_of(problem: SearchProblem, batch: Any) -> int:
    """``problem.batch_size(batch)`` if the problem gives one, else the engine's :func:`infer_batch_size`."""
    return int(problem.batch_size(batch) if problem.batch_size is not None else infer_batch_size(batch))


def mask_text(mask: Sequence[int] | np.ndarray) -> str:
    """A mask for messages: its 0/1 string and kept indices."""
    m = [int(v) for v in np.asarray(mask).ravel()]
    return f"{''.join(map(str, m))} (keeps {[i for i, v in enumerate(m) if v]})"


class CostMeter:
    """What a search spends: forward and backward passes through the model counted in samples (a batch
    of 4 is 4), ``block_evaluations`` (blocks computed × samples, so cheaper pruned forwards show) and wall
    seconds since the meter was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.forward_passes = 0
        self.backward_passes = 0
        self.block_evaluations = 0

    def forward(self, samples: int, blocks: int) -> None:
        """One forward of ``samples`` samples through the model, computing ``blocks`` blocks."""
        self.forward_passes += int(samples)
        self.block_evaluations += int(blocks) * int(samples)

    def backward(self, samples: int) -> None:
        self.backward_passes += int(samples)

    def add(self, cost: dict) -> None:
        """Add another search's or scorer's ``cost`` (forward/backward passes, block evaluations; absent = 0)."""
        for key in ("forward_passes", "backward_passes", "block_evaluations"):
            setattr(self, key, getattr(self, key) + int(cost.get(key, 0) or 0))

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def as_dict(self) -> dict[str, float | int]:
        return {
            "seconds": self.seconds,
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "block_evaluations": self.block_evaluations,
        }


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` within the block; every submodule's own mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def calibration_loss(
    problem: SearchProblem,
    mask: Sequence[int] | np.ndarray | torch.Tensor,
    batches: Sequence[Any],
    meter: CostMeter | None = None,
) -> float:
    """Mean over ``batches`` of ``problem.loss_fn(batch, masks, "skip")`` for one 0/1 ``mask``, no training.

    The mask is expanded to ``(batch size, N)``; the model runs in eval mode under ``torch.no_grad()``
    (skip mode: dropped blocks are not computed). A non-finite loss is a :class:`StrategyError` naming the
    mask. ``meter`` (optional) counts the forward passes and block evaluations.
    """
    if not batches:
        raise StrategyError("no calibration batches to score a mask on")
    checked = Mask.of(mask, problem.stack.num_layers, error=StrategyError, what="a mask for this model")
    m = checked.row(device=problem_device(problem))
    computed = int(m.sum())
    total = 0.0
    with eval_mode(problem.model), torch.no_grad():
        for batch in batches:
            b = batch_size_of(problem, batch)
            loss = problem.loss_fn(batch, m.expand(b, -1), "skip")
            total += float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            if meter is not None:
                meter.forward(b, computed)
    value = total / len(batches)
    if not math.isfinite(value):
        raise StrategyError(
            f"the calibration loss of mask {checked.text()} is {value}; check the model's weights and the "
            "calibration data for NaN or overflow"
        )
    return value


def rule_result(
    strategy: "Strategy",
    problem: SearchProblem,
    seed: int,
    mask: Sequence[int] | np.ndarray,
    meter: CostMeter,
    *,
    scores: Sequence[float] | None = None,
    loss_history: Sequence[float] = (),
    steps: int = 0,
    trajectory: Sequence[dict] = (),
    describe: dict[str, Any] | None = None,
) -> SearchResult:
    """The :class:`SearchResult` of a strategy that decides by a rule rather than learned probabilities.

    Marginals are the 0/1 mask itself, confidence 1 (per block too), no option probabilities.
    """
    m = [int(v) for v in np.asarray(mask).ravel()]
    if len(m) != problem.space.num_layers or sum(m) != problem.space.num_kept or set(m) - {0, 1}:
        raise StrategyError(
            f"strategy {strategy.name!r} produced mask {mask_text(m)}, which does not keep "
            f"{problem.space.num_kept} of {problem.space.num_layers} layers"
        )
    return SearchResult(
        mask=m,
        kept=[i for i, v in enumerate(m) if v],
        probabilities=[],
        marginals=[float(v) for v in m],
        confidence=1.0,
        block_confidence=[1.0] * problem.space.num_blocks,
        loss_history=[float(v) for v in loss_history],
        nonfinite_steps=0,
        steps=int(steps),
        settings={"strategy": strategy.name, "seed": seed, **(describe or {}), **copy.deepcopy(strategy.settings)},
        seconds=meter.seconds,
        cost=meter.as_dict(),
        scores=None if scores is None else [float(s) for s in scores],
        trajectory=list(trajectory),
    )


#: Settings every score-based strategy shares: how many calibration batches to score on, and whether
#: the lowest-scoring layers are removed anywhere ("global", the papers' rule) or per block ("space").
SCORE_DEFAULTS: dict[str, Any] = dict(recipes.SCORING)
SCOPES = ("global", "space")


class RuleStrategy(Strategy):
    """A strategy that decides by a fixed rule or by scoring masks, without learned mask probabilities."""

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        if "score_batches" in self.defaults:
            self._positive_int("score_batches")
        if "scope" in self.defaults:
            self._choice("scope", SCOPES)


#: Settings every learned-mask strategy shares (TinyFusion's recipe, :data:`pruneseek.recipes.LEARNED_MASK`).
LEARNED_MASK_DEFAULTS: dict[str, Any] = dict(recipes.LEARNED_MASK)


def search_config(settings: dict[str, Any], problem: SearchProblem, seed: int, desc: str) -> SearchConfig:
    """The engine's :class:`SearchConfig` from a learned-mask strategy's settings and the problem's run options."""
    keys = {
        "tau", "scaling", "weight_update", "lora_rank", "lora_alpha", "lora_init", "lora_after",
        "weight_lr", "gate_lr", "weight_decay", "clip_norm", "ema_decay", "mode", "max_nonfinite",
    }
    targets = settings["lora_targets"] or problem.lora_targets
    return SearchConfig(steps=problem.steps, seed=seed, desc=desc, progress=problem.progress,
                        lora_targets=list(targets) if targets else None, loss_scaling=problem.loss_scaling,
                        **{k: settings[k] for k in keys})


class LearnedMaskStrategy(Strategy):
    """A strategy that learns a mask distribution with the engine (``run_search``); subclasses build the learner."""

    def learner(self, problem: SearchProblem) -> MaskLearner:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self, problem: SearchProblem) -> dict[str, Any]:
        """Extra entries for the result's settings record (none by default)."""
        return {}

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        config = search_config(self.settings, problem, seed, desc=self.name)
        result = run_search(
            problem.model, problem.stack, self.learner(problem), problem.loss_fn, problem.batches, config,
            device=problem.device, batch_size=problem.batch_size, checkpointing=problem.checkpointing,
            parallel=problem.parallel,
        )
        result.settings = {"strategy": self.name, "seed": seed, "steps": problem.steps, **self.describe(problem),
                           **self.settings}
        return result
