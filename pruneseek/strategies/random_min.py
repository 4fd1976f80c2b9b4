"""``random-min``: the best of many random masks by calibration loss (docs/design.md §6, "perturbation").

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

from pruneseek import recipes
from pruneseek.engine import SearchResult
from pruneseek.strategies.registry import register
from pruneseek.strategies.base import SearchProblem
from pruneseek.strategies.scoring import MaskLossSearch


@register("random-min")
class RandomMin(MaskLossSearch):
    """Uniform masks from the block space; the lowest calibration loss wins."""

    source = (
        "TinySR (Table 2, 'Random-Min': random pruning, the mask with minimal task loss); TinyFusion "
        "(Fang et al. arXiv:2412.01199, 2024) random-pruning baseline"
    )
    defaults = {"num_masks": 100, "score_batches": recipes.SCORING["score_batches"]}
    budget = "num_masks"

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        losses = self.mask_losses(problem)
        masks = problem.space.sample(self.settings["num_masks"], np.random.default_rng(seed))
        best = None
        for mask in tqdm(masks, desc=self.name, disable=not problem.progress, leave=False):
            loss = losses(mask.tobytes(), mask)
            if best is None or loss < best[0]:
                best = (loss, mask)
        return losses.result(self, seed, best[1], best[0])
