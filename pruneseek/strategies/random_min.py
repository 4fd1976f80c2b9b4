"""``random-min``: the best of many random masks by calibration loss (SPEC.md §6, "perturbation").

Source: the "perturbation-based" baseline of TinySR (§4, Table 2: "We randomly prune models and select one
with minimal task loss"); TinyFusion's random-pruning baseline is in the same spirit (Fang et al.,
arXiv:2412.01199, 2024, Table 1).

Rule. Draw ``num_masks`` masks (default 100) uniformly and independently from the search space
(:meth:`BlockSpace.sample`, seeded by the search seed), score each by the calibration loss with no training
(the same calibration batches for every mask) and keep the lowest (ties: the first drawn). A mask drawn
twice is scored once. Cost: one calibration loss per distinct mask.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from pruneseek.engine import SearchResult
from pruneseek.strategies.registry import register
from pruneseek.strategies.base import (
    CostMeter,
    RuleStrategy,
    SearchProblem,
    calibration_batches,
    calibration_loss,
    rule_result,
)


@register("random-min")
class RandomMin(RuleStrategy):
    """Uniform masks from the block space; the lowest calibration loss wins."""

    source = (
        "TinySR (Table 2, 'Random-Min': random pruning, the mask with minimal task loss); TinyFusion "
        "(Fang et al. arXiv:2412.01199, 2024) random-pruning baseline"
    )
    defaults = {"num_masks": 100, "score_batches": 8, "progress": True}

    def __init__(self, **settings):
        super().__init__(**settings)
        self._positive_int("num_masks")

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        meter = CostMeter()
        batches = calibration_batches(problem, self.settings["score_batches"])
        masks = problem.space.sample(self.settings["num_masks"], np.random.default_rng(seed))
        seen: dict[bytes, float] = {}
        history = []
        best = None
        for mask in tqdm(masks, desc=self.name, disable=not self.settings["progress"], leave=False):
            key = mask.tobytes()
            if key not in seen:
                seen[key] = calibration_loss(problem, mask, batches, meter)
                history.append(seen[key])
            if best is None or seen[key] < best[0]:
                best = (seen[key], mask)
        return rule_result(self, problem, seed, best[1], meter, loss_history=history,
                           describe={"distinct_masks": len(seen), "best_loss": best[0]})
