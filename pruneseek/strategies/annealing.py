"""``annealing``: PocketSR's online annealing pruning — a mask from a base rule, removed gradually.

Source: "PocketSR: The Super-Resolution Expert in Your Pocket Mobiles" (PocketSR), §3.2.1 "Online
Annealing Pruning" (arXiv:2510.03012): the original module M and a lightweight
replacement M_P run in parallel, y = σ·M(x) + (1 − σ)·M_P(x), the original module's weights frozen, σ
annealed 1 → 0 over T = 8000 steps; PocketSR chose the pruned positions by ablation. The "replacement"
family of docs/design.md §6.

Rule. *Which* blocks go is decided by a base selection strategy, ``select`` (default "sensitivity", the
closest automatic stand-in for PocketSR's ablation; any other registered rule-based strategy, with
``select_settings`` passed to it); the mask is exactly that strategy's mask. *How* they go is this
strategy's declaration to the recovery training that follows, :meth:`Annealing.recovery_overrides`
``{"anneal_steps": T}`` (default T = 8000, the paper's; a comparison may scale it to its budget): during
those steps each dropped block's output is blended with its input (M_P = identity for depth pruning),

    y = σ(t)·M(x) + (1 − σ(t))·x,      σ(t) = max(0, (T − t)/T)      (:func:`pruneseek.engine.schedules.anneal_sigma`)

with the dropped blocks' weights frozen. PocketSR's text writes σ = min(0, (T − t)/T), which is never
positive; max is what the description ("annealed to zero") means (docs/design.md §6). The recovery loop applies it.
"""
from __future__ import annotations

from typing import Any

from pruneseek.engine import SearchResult
from pruneseek.errors import StrategyError
from pruneseek.strategies.registry import register
from pruneseek.strategies.base import LearnedMaskStrategy, SearchProblem, Strategy

#: PocketSR's annealing length T (§4.1: "The total number of annealing steps is set to T = 8000").
POCKETSR_ANNEAL_STEPS = 8000



@register("annealing")
class Annealing(Strategy):
    """The ``select`` strategy's mask, plus an annealed-removal schedule for the recovery."""

    source = (
        "PocketSR: The Super-Resolution Expert in Your Pocket Mobiles, §3.2.1 Online Annealing Pruning "
        "(y = σ·M(x) + (1 − σ)·M_P(x), σ = max(0, (T − t)/T), T = 8000, original weights frozen)"
    )
    defaults = {"select": "sensitivity", "select_settings": {}, "anneal_steps": POCKETSR_ANNEAL_STEPS}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        from pruneseek.strategies.registry import available, strategy_class

        select = self.settings["select"]
        if select == self.name:
            raise StrategyError("annealing: select names the strategy that picks the mask; it cannot be 'annealing'")
        if select not in available():
            raise StrategyError(f"annealing: select must be a registered strategy, got {select!r}; "
                                f"available: {', '.join(n for n in available() if n != self.name)}")
        if issubclass(strategy_class(select), LearnedMaskStrategy):
            raise StrategyError(
                f"annealing: select must be a rule-based strategy (it picks the mask without training), got the "
                f"learned strategy {select!r}; use e.g. sensitivity, shortgpt, flux-lite, snapfusion, bk-sdm"
            )
        if not isinstance(self.settings["select_settings"], dict):
            raise StrategyError(f"annealing: select_settings must be a table of the {select} strategy's settings, "
                                f"got {self.settings['select_settings']!r}")
        steps = self.settings["anneal_steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise StrategyError(f"annealing: anneal_steps must be a whole number ≥ 0, got {steps!r}")
        self.selector = strategy_class(select)(**self.settings["select_settings"])

    def recovery_overrides(self) -> dict[str, Any]:
        """``{"anneal_steps": T}``: the recovery blends each dropped block out over T steps (:func:`pruneseek.engine.schedules.anneal_sigma`)."""
        return {"anneal_steps": self.settings["anneal_steps"]}

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        result = self.selector.search(problem, seed)
        result.settings = {
            "strategy": self.name,
            "seed": seed,
            **self.settings,
            "select_result": result.settings,
        }
        return result
