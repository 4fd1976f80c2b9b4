"""``shortgpt``: remove the blocks whose output is most similar to their input (docs/design.md §6, "similarity").

Source: X. Men, M. Xu, Q. Zhang, B. Wang, H. Lin, Y. Lu, X. Han, W. Chen, "ShortGPT: Layers in Large
Language Models are More Redundant Than You Expect", arXiv:2403.03853 (2024), §3 (Block Influence); as
ported to diffusion transformers by TinyFusion (github.com/VainF/TinyFusion, ``prune_by_score.py``), whose
port never removes the last block; compared as a baseline in TinySR Table 2.

Rule. Run the full model on the calibration batches and, for every block i, average over all image
tokens t (and batches) the cosine similarity of its input and output:

    BI_i = 1 − mean_t cos(x_{i,t}, x_{i+1,t})

then remove the lowest-BI blocks in one shot, no training. ``keep_last`` (default true, TinyFusion's DiT
port) never removes the last block. ``scope`` "global" (default, the paper's rule) removes the
``N − M`` lowest-BI layers anywhere; "space" removes the lowest within each block of the search space.
Cost: one forward of the full model per calibration batch.
"""
from __future__ import annotations

from pruneseek.errors import StrategyError
from pruneseek.strategies.registry import register
from pruneseek.strategies.base import SCORE_DEFAULTS, CostMeter, SearchProblem
from pruneseek.strategies.scoring import ScoreStrategy, block_statistic, cosine_statistic


def block_influence(mean_cosines: list[float]) -> list[float]:
    """BI_i = 1 − mean cosine similarity of block i's input and output (ShortGPT eq. 2)."""
    return [1.0 - c for c in mean_cosines]


@register("shortgpt")
class ShortGPT(ScoreStrategy):
    """Block Influence on the image tokens; the lowest-BI blocks go."""

    source = (
        "Men et al. ShortGPT: Layers in Large Language Models are More Redundant Than You Expect. "
        "arXiv:2403.03853, 2024 (Block Influence); DiT port: github.com/VainF/TinyFusion prune_by_score.py"
    )
    defaults = {**SCORE_DEFAULTS, "keep_last": True}

    def __init__(self, **settings):
        super().__init__(**settings)
        if not isinstance(self.settings["keep_last"], bool):
            value = self.settings["keep_last"]
            raise StrategyError(f"shortgpt: setting keep_last must be true or false, got {value!r}")

    def layer_scores(self, problem: SearchProblem, batches, meter: CostMeter) -> tuple[list[float], list[float]]:
        cosines, full_loss = block_statistic(problem, batches, cosine_statistic, meter)
        return block_influence(cosines), [full_loss]

    def protected(self, problem: SearchProblem) -> list[int]:
        """The last block when ``keep_last`` (TinyFusion's DiT port)."""
        return [problem.space.num_layers - 1] if self.settings["keep_last"] else []
