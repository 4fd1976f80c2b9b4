"""``tinysr``: block gates plus dynamic inter-block activation (TinySR; docs/design.md §4 + §5).

Source: "TinySR: Pruning Diffusion for Real-World Image Super-Resolution" (dynamic inter-block
activation and expansion-corrosion strategy, §3.1, eq. 5–8); reference code Microtreei/TinySR.

Rule. On top of TinyFusion's block gates, every edge (j, h) of the pair topology holds a 3-way logit
vector q over ``[m⁻, m, m⁺]`` (corrode j / expand h by k layers, unchanged, expand j / corrode h), drawn
per sample by the same hard Gumbel-softmax; the kept count never changes. Which layers move follows the
candidate rule: ``"marginal"`` (paper eq. 7–8: lowest/highest marginal π) or ``"next-option"`` (the
released code's next-best overlapping option, restricted so both blocks move exactly k layers — see
:mod:`pruneseek.engine.transfer`). Decision (§3.1): per edge the transform with the largest EMA q, then
each block keeps its c_j = s_j ± k layers of highest π, so the mask may leave the block space.

Defaults follow the TinySR/TSD-SR recipe where the paper states it (LoRA rank 64, α 64, lr 5e-5); the
gate lr is not stated there and is taken as 10× the weight lr, as in TinyFusion.
"""
from __future__ import annotations

from typing import Any

from pruneseek.engine import MaskLearner, TransferGates
from pruneseek.engine.transfer import RULES
from pruneseek.spaces import make_topology, topology_name
from pruneseek.strategies.registry import register
from pruneseek import recipes
from pruneseek.errors import StrategyError
from pruneseek.strategies.base import LEARNED_MASK_DEFAULTS, LearnedMaskStrategy, SearchProblem


@register("tinysr")
class TinySR(LearnedMaskStrategy):
    """Block gates + TransferGates over the problem's topology and k; decision by q then π."""

    source = (
        "TinySR: Pruning Diffusion for Real-World Image Super-Resolution (dynamic inter-block activation, "
        "expansion-corrosion strategy; §3.1, eq. 5-8); code: github.com/Microtreei/TinySR"
    )
    defaults = {**LEARNED_MASK_DEFAULTS, **recipes.TINYSR}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        if self.settings["rule"] not in RULES:
            raise StrategyError(f"tinysr rule must be one of {list(RULES)}, got {self.settings['rule']!r}")

    def learner(self, problem: SearchProblem) -> MaskLearner:
        s = self.settings
        transfer = TransferGates(problem.space, problem.topology, k=problem.k, rule=s["rule"], init=s["init_logit"])
        return MaskLearner(problem.space, transfer, share_across_batch=s["share_across_batch"], init=s["init_logit"])

    def describe(self, problem: SearchProblem) -> dict[str, Any]:
        topology = topology_name(make_topology(problem.topology, problem.space.num_blocks))
        return {"topology": topology, "k": problem.k}
