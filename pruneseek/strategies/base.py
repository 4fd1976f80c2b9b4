"""The strategy interface and the search problem every strategy receives."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import nn

from pruneseek.engine import MaskedStack, MaskLearner, SearchConfig, SearchResult, run_search
from pruneseek.spaces import BlockSpace


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


class Strategy:
    """A depth-pruning strategy: ``search(problem, seed) -> SearchResult``.

    Subclasses set ``source`` (the paper) and ``defaults`` (hyperparameters); an instance's ``settings``
    are the defaults with the constructor's overrides. Unknown setting names are errors.
    """

    name: ClassVar[str] = ""
    source: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **settings: Any):
        from pruneseek.strategies import StrategyError

        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise StrategyError(
                f"strategy {self.name!r} has no setting(s) {', '.join(unknown)}; its settings are "
                f"{', '.join(sorted(self.defaults))}"
            )
        self.settings: dict[str, Any] = {**copy.deepcopy(self.defaults), **settings}

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"


#: Settings every learned-mask strategy shares (SPEC §4; TinyFusion's recipe).
LEARNED_MASK_DEFAULTS: dict[str, Any] = {
    "tau": {"kind": "linear", "start": 4.0, "end": 0.1},
    "scaling": 100.0,
    "weight_update": "lora",
    "lora_rank": 8,
    "lora_alpha": 16.0,
    "lora_targets": None,
    "lora_init": True,
    "lora_after": "discard",
    "weight_lr": 1e-4,
    "gate_lr": 1e-3,
    "weight_decay": 0.0,
    "clip_norm": 1.0,
    "ema_decay": 0.999,
    "mode": "blend",
    "share_across_batch": False,
    "max_nonfinite": 10,
    "init_logit": 0.02,
    "progress": True,
}


def search_config(settings: dict[str, Any], problem: SearchProblem, seed: int, desc: str) -> SearchConfig:
    """The engine's :class:`SearchConfig` from a learned-mask strategy's settings."""
    keys = {
        "tau", "scaling", "weight_update", "lora_rank", "lora_alpha", "lora_targets", "lora_init", "lora_after",
        "weight_lr", "gate_lr", "weight_decay", "clip_norm", "ema_decay", "mode", "max_nonfinite", "progress",
    }
    return SearchConfig(steps=problem.steps, seed=seed, desc=desc, **{k: settings[k] for k in keys})


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
            device=problem.device, batch_size=problem.batch_size,
        )
        result.settings = {"strategy": self.name, "seed": seed, "steps": problem.steps, **self.describe(problem),
                           **self.settings}
        return result
