"""``bk-sdm``: a fixed hand rule, no data (docs/design.md §6, "experience").

Source: B.-K. Kim, H.-K. Song, T. Castells, S. Choi, "BK-SDM: A Lightweight, Fast, and Cheap Version of
Stable Diffusion", ECCV 2024 (§3: remove one of the two residual/attention pairs in each U-Net down stage,
keeping the first, and in each up stage, keeping the last). TinyFusion (github.com/VainF/TinyFusion,
README "Pruning with BK-SDM (Oracle) Scheme") carries it over to DiT by treating the first half of the
layers as the encoder and the second half as the decoder, in groups of 2. The "experience" baseline of
TinySR Table 2.

Rule. Reduce keep/N to p/q in lowest terms. The layers [0, N/2) form the encoder half and [N/2, N) the
decoder half, each cut into consecutive groups of q layers; keep the *first* p layers of every encoder
group and the *last* p of every decoder group. 28 → 14 (p/q = 1/2) keeps
[0, 2, 4, 6, 8, 10, 12, 15, 17, 19, 21, 23, 25, 27] — docs/design.md §6's list, which corrects the README's
"14" to 15: layer 14 is the first of its decoder pair — and 24 → 12 keeps [0, 2, 4, 6, 8, 10, 13, 15,
17, 19, 21, 23]; 24 → 16 and 24 → 8 use groups of 3. When N is odd or N/2 is not a multiple of q, the
rule cannot be applied and a StrategyError says so. The rule ignores the block structure of the search
space: its mask may lie outside it (the mask file then records the full space).
"""
from __future__ import annotations

from math import gcd

import numpy as np

from pruneseek.engine import SearchResult
from pruneseek.errors import StrategyError
from pruneseek.strategies.registry import register
from pruneseek.strategies.base import CostMeter, RuleStrategy, SearchProblem, rule_result


def bk_sdm_keep(num_layers: int, keep: int) -> list[int]:
    """The kept layer indices of the BK-SDM rule for ``num_layers`` → ``keep`` (module docstring)."""
    if not 0 < keep <= num_layers:
        raise StrategyError(f"bk-sdm: cannot keep {keep} of {num_layers} layers; keep must lie in 1..{num_layers}")
    d = gcd(keep, num_layers)
    p, q = keep // d, num_layers // d
    if num_layers % 2 or (num_layers // 2) % q:
        realisable = [k for k in range(1, num_layers + 1)
                      if num_layers % 2 == 0 and (num_layers // 2) % (num_layers // gcd(k, num_layers)) == 0]
        raise StrategyError(
            f"bk-sdm cannot prune {num_layers} → {keep} layers: the rule keeps p of every q = {q} layers "
            f"(keep/N = {p}/{q}) in the encoder and decoder halves, and a half of {num_layers / 2:g} layers is not "
            f"made of groups of {q}; kept counts it can realise for {num_layers} layers: {realisable or 'none'}"
        )
    half = num_layers // 2
    kept = []
    for start in range(0, half, q):
        kept.extend(range(start, start + p))  # encoder group: its first p layers
    for start in range(half, num_layers, q):
        kept.extend(range(start + q - p, start + q))  # decoder group: its last p layers
    return kept


@register("bk-sdm")
class BKSDM(RuleStrategy):
    """First p of each encoder group of q, last p of each decoder group; no data, no settings."""

    source = (
        "Kim, Song, Castells, Choi. BK-SDM: A Lightweight, Fast, and Cheap Version of Stable Diffusion. ECCV 2024; "
        "DiT form: github.com/VainF/TinyFusion README (encoder/decoder halves, groups of 2)"
    )
    defaults: dict = {}

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        meter = CostMeter()
        n = problem.space.num_layers
        mask = np.zeros(n, dtype=np.uint8)
        mask[bk_sdm_keep(n, problem.space.num_kept)] = 1
        return rule_result(self, problem, seed, mask, meter)
