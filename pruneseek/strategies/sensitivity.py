"""``sensitivity``: remove the blocks whose removal alone hurts the calibration loss least (docs/design.md §6).

Source: the "metric"-family baseline of TinySR Table 2 ("Sensitivity Analysis", which TinySR cites as
S. Han, J. Pool, J. Tran, W. Dally, "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015: prune each layer alone and measure how the loss degrades), applied to whole
transformer blocks.

Rule. With the calibration loss L(m) of a 0/1 mask m (no training, the same calibration batches for
every mask), the sensitivity of block i is the rise of the loss when only block i is removed:

    S_i = L(1 − e_i) − L(1)

Remove the least sensitive blocks in one shot. ``scope`` "global" (default) removes the ``N − M`` lowest
anywhere; "space" the lowest within each block of the search space. Cost: N + 1 calibration losses, so
(N + 1) · B · b forward passes for B batches of b samples.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from pruneseek.strategies.registry import register
from pruneseek.strategies.base import SCORE_DEFAULTS, CostMeter, SearchProblem, calibration_loss
from pruneseek.strategies.scoring import ScoreStrategy


def drop_one_losses(
    problem: SearchProblem, batches, meter: CostMeter, progress: bool = False, desc: str = "sensitivity"
) -> tuple[float, list[float]]:
    """The full model's calibration loss and, per layer i, the loss with only layer i removed."""
    n = problem.space.num_layers
    full = calibration_loss(problem, np.ones(n, dtype=np.uint8), batches, meter)
    losses = []
    for i in tqdm(range(n), desc=desc, disable=not progress, leave=False):
        mask = np.ones(n, dtype=np.uint8)
        mask[i] = 0
        losses.append(calibration_loss(problem, mask, batches, meter))
    return full, losses


@register("sensitivity")
class Sensitivity(ScoreStrategy):
    """Drop-one loss rise per block; the least sensitive blocks go."""

    source = (
        "Sensitivity analysis (Han, Pool, Tran, Dally. Learning both Weights and Connections for Efficient Neural "
        "Networks. NeurIPS 2015), on whole blocks; the 'Sensitivity' baseline of TinySR Table 2"
    )
    defaults = dict(SCORE_DEFAULTS)

    def layer_scores(self, problem: SearchProblem, batches, meter: CostMeter) -> tuple[list[float], list[float]]:
        full, losses = drop_one_losses(problem, batches, meter, problem.progress, self.name)
        return [loss - full for loss in losses], [full, *losses]
