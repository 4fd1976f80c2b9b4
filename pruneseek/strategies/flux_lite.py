"""``flux-lite``: remove the blocks that change their input least, by mean squared error (docs/design.md §6).

Source: D. Verdú, J. M. (Freepik), "Flux.1 Lite: Distilling Flux1.dev for Efficient Text-to-Image
Generation", 2024 (huggingface.co/Freepik/flux.1-lite-8B-alpha): the MSE between each transformer
block's input and output over calibration prompts; it kept 8 of FLUX.1-dev's 19 double-stream blocks.
The "similarity"-family baseline of TinySR Table 2.

Rule. Run the full model on the calibration batches and, for every block i, average over all elements
of the image-token stream (and batches)

    MSE_i = mean (x_{i+1} − x_i)²

then remove the lowest-MSE blocks in one shot, no training. ``scope`` "global" (default) removes the
``N − M`` lowest-MSE layers anywhere; "space" removes the lowest within each block of the search space.
Cost: one forward of the full model per calibration batch.
"""
from __future__ import annotations

from pruneseek.strategies.registry import register
from pruneseek.strategies.base import SCORE_DEFAULTS, CostMeter, SearchProblem
from pruneseek.strategies.scoring import ScoreStrategy, block_statistic, squared_error_statistic


@register("flux-lite")
class FluxLite(ScoreStrategy):
    """Input-output MSE per block on the image tokens; the lowest-MSE blocks go."""

    source = (
        "Verdú (Freepik). Flux.1 Lite: Distilling Flux1.dev for Efficient Text-to-Image Generation, 2024 "
        "(block input/output MSE analysis; huggingface.co/Freepik/flux.1-lite-8B-alpha)"
    )
    defaults = dict(SCORE_DEFAULTS)

    def layer_scores(self, problem: SearchProblem, batches, meter: CostMeter) -> tuple[list[float], list[float]]:
        mse, full_loss = block_statistic(problem, batches, squared_error_statistic, meter)
        return mse, [full_loss]
