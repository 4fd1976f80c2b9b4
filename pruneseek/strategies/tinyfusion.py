"""``tinyfusion``: learned block-local masks (TinyFusion; docs/design.md §4).

Source: G. Fang, K. Li, X. Ma, X. Wang, "TinyFusion: Diffusion Transformers Learned Shallow",
arXiv:2412.01199 (2024).

Rule. Each block j of the block-factored space holds logits over its ``C(B_j, s_j)`` options (init 0.02).
Every step draws a per-sample mask by hard Gumbel-softmax over ``logits · scaling`` (τ linear 4 → 0.1,
scaling 100), runs the model under it, and trains the logits jointly with a LoRA weight update
(rank 8, α 16, lr 1e-4; logits at 10× that lr; AdamW, weight decay 0, grad-norm clip 1.0). The decision
is, per block, the option with the largest EMA (0.999) logit; the mask always lies in the block space.
"""
from __future__ import annotations

from pruneseek.engine import MaskLearner
from pruneseek.strategies.registry import register
from pruneseek.strategies.base import LEARNED_MASK_DEFAULTS, LearnedMaskStrategy, SearchProblem


@register("tinyfusion")
class TinyFusion(LearnedMaskStrategy):
    """Block gates only: the decided mask is the largest-EMA-logit option of every block."""

    source = (
        "Fang, Li, Ma, Wang. TinyFusion: Diffusion Transformers Learned Shallow. arXiv:2412.01199, 2024 "
        "(learnable depth pruning, §3)"
    )
    defaults = dict(LEARNED_MASK_DEFAULTS)

    def learner(self, problem: SearchProblem) -> MaskLearner:
        s = self.settings
        return MaskLearner(problem.space, None, share_across_batch=s["share_across_batch"], init=s["init_logit"])
