"""``race``: successive halving over candidate masks, each scored by a short recovery (docs/design.md §6.6).

Not from a pruning paper: the decision rule is what the comparison measures. Every other strategy scores a
mask *before* training (calibration loss, block statistics, learned gates), yet a pruned model is used
*after* retraining, and the two orders disagree (TinySR §3.1 makes the same point for its own search). The
race asks the question that matters directly, and spends its budget where it decides something.

Rule.

1. **Candidates**: the masks of the cheap rule-based strategies named in ``rules`` (each run on the problem with
   its own defaults, overridden by the ``rule_settings`` it has, and the search seed); then ``screen`` masks drawn
   uniformly from the search space (seeded) are scored by the calibration loss (as ``random-min`` scores them)
   (a rule that cannot prune this model, such as bk-sdm's halves on some layer counts, is left out)
   and the lowest join until ``candidates`` distinct masks are in the race. Masks outside the space are kept (a
   rule may choose one); duplicates once.
2. **Rounds** (successive halving; Jamieson & Talwalkar, arXiv:1502.07943, the inner loop of Hyperband, Li et
   al., arXiv:1603.06560): every candidate still racing is recovered from the teacher's weights for ``s``
   steps by the comparison's recovery protocol and scored on the **validation split** (never the held-out
   one) by the problem's ``candidate_score`` (PSNR to the teacher's output, higher is better). The best
   ``⌈n / eta⌉`` go on; ``s`` is multiplied by ``eta``. Ties keep the candidate listed first.
3. When one candidate is left it is the mask (it is not recovered again).

Every round recovers with the same seed (the search seed), so candidates meet the same data order and
initialisation. The cost (forward and backward passes of the recoveries and the validation evaluations) is
recorded, as it is for every strategy. ``candidate_score`` is supplied by the experiment layer
(:func:`pruneseek.recovery.recovery_scorer`), so this module does not import the procedure it calls.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pruneseek import recipes
from pruneseek.errors import StrategyError
from pruneseek.engine import SearchResult
from pruneseek.strategies.base import CostMeter, RuleStrategy, SearchProblem, rule_result
from pruneseek.strategies.registry import register

#: Rule-based strategies whose masks enter the race (cheap, deterministic per seed). ``random-min``'s mask needs no
#: entry: with ``screen`` = its ``num_masks`` the screen draws the same masks, so its best is random-min's choice.
RULES = ("bk-sdm", "shortgpt", "flux-lite", "sensitivity")


@register("race")
class Race(RuleStrategy):
    """Candidate masks raced by successive halving on short recoveries scored on the validation split."""

    source = ("pruneseek: successive halving (Jamieson & Talwalkar arXiv:1502.07943; Hyperband, Li et al. "
              "arXiv:1603.06560) over candidate masks, scored after short recoveries on the validation split")
    defaults = {"candidates": recipes.RACE["candidates"], "rules": list(RULES), "rule_settings": {},
                "screen": recipes.RACE["screen"], "score_batches": recipes.SCORING["score_batches"],
                "first_steps": recipes.RACE["first_steps"], "eta": recipes.RACE["eta"]}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        for key in ("candidates", "screen", "first_steps", "eta"):
            self._positive_int(key)
        if self.settings["eta"] < 2:
            raise StrategyError(f"strategy 'race': setting eta must be at least 2, got {self.settings['eta']}")
        from pruneseek.strategies.registry import available

        unknown = [r for r in self.settings["rules"] if r not in available() or r == "race"]
        if unknown:
            raise StrategyError(f"strategy 'race': rules {unknown} are not rule-based strategies; choose from "
                                f"{', '.join(RULES)}")

    def candidates(self, problem: SearchProblem, seed: int, meter: CostMeter) -> list[tuple[str, np.ndarray]]:
        """``(origin, mask)`` of every distinct candidate: the rules' masks, then screened uniform draws."""
        from pruneseek.strategies.registry import get_strategy, strategy_class
        from pruneseek.strategies.scoring import MaskLosses, scoring_setup

        out: dict[bytes, tuple[str, np.ndarray]] = {}
        for name in self.settings["rules"]:
            own = {k: v for k, v in self.settings["rule_settings"].items() if k in strategy_class(name).defaults}
            try:
                result = get_strategy(name, **own).search(problem, seed=seed)
            except StrategyError:  # a rule that does not apply to this model (bk-sdm's halves on an odd count)
                continue
            meter.add(result.cost)
            mask = np.asarray(result.mask, dtype=np.uint8)
            out.setdefault(mask.tobytes(), (name, mask))
        _, batches = scoring_setup(self, problem)
        losses = MaskLosses(problem, batches, meter)
        draws = problem.space.sample(self.settings["screen"], np.random.default_rng(seed)).astype(np.uint8)
        ranked = sorted(({m.tobytes(): m for m in draws}).values(), key=lambda m: losses(m.tobytes(), m))
        for mask in ranked:
            if len(out) >= self.settings["candidates"]:
                break
            out.setdefault(mask.tobytes(), ("screened", mask))
        return list(out.values())

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        score = getattr(problem, "candidate_score", None)
        if score is None:
            raise StrategyError("strategy 'race' scores masks by short recoveries on the validation split; this "
                                "problem has no candidate_score (run it through pruneseek search or compare)")
        meter = CostMeter()
        racing = self.candidates(problem, seed, meter)
        steps, rounds = self.settings["first_steps"], []
        bar = tqdm(desc=self.name, total=self._recoveries(len(racing)), disable=not problem.progress, leave=False)
        while len(racing) > 1:
            scored = []
            for origin, mask in racing:
                value, cost = score(mask, steps, seed)
                meter.add(cost)
                scored.append((value, origin, mask))
                bar.update(1)
            order = sorted(range(len(scored)), key=lambda i: -scored[i][0])  # stable: ties keep list order
            rounds.append({"steps": steps, "scores": [{"origin": o, "kept": [int(i) for i in np.flatnonzero(m)],
                                                       "score": v} for v, o, m in scored]})
            racing = [racing[i] for i in order[: math.ceil(len(racing) / self.settings["eta"])]]
            steps *= self.settings["eta"]
        bar.close()
        winner = racing[0]
        return rule_result(self, problem, seed, winner[1], meter, describe={"winner_origin": winner[0], "race": rounds})

    def _recoveries(self, n: int) -> int:
        total = 0
        while n > 1:
            total += n
            n = math.ceil(n / self.settings["eta"])
        return total
