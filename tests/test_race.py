"""The race strategy: successive halving over candidate masks scored by short recoveries (docs/design.md §6.6)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from pruneseek.errors import StrategyError
from pruneseek.strategies import get_strategy
from tests.test_strategies_baselines import COSTS, additive_problem, planted_loss

#: What a layer is worth *after recovery* in the planted problem: unrelated to the calibration costs, so a race
#: that decided by the calibration loss would pick another mask.
AFTER = [0.5, 6.0, 1.0, 7.0, 0.2, 3.0, 5.0, 0.4]


def planted_scorer(calls: list, noise: float = 0.0):
    """``score(mask, steps, seed)``: minus the after-recovery loss of the dropped layers, noisier for short
    recoveries; records every call."""
    rng = np.random.default_rng(0)

    def score(mask, steps, seed):
        calls.append((tuple(int(v) for v in mask), steps, seed))
        value = -sum(w for w, m in zip(AFTER, mask) if not m) + noise * rng.normal() / steps
        return value, {"forward_passes": steps * 4, "backward_passes": steps * 4}

    return score


def test_race_halves_and_keeps_the_mask_that_recovers_best():
    problem = additive_problem()
    calls: list = []
    problem.candidate_score = planted_scorer(calls)
    strategy = get_strategy("race", candidates=6, first_steps=2, eta=2, rules=["bk-sdm", "random-min"])
    result = strategy.search(problem, seed=0)
    rounds = result.settings["race"]
    assert [r["steps"] for r in rounds] == [2, 4, 8]  # 6 → 3 → 2 → 1 candidates, steps doubling
    assert [len(r["scores"]) for r in rounds] == [6, 3, 2] and len(calls) == 11  # the last one is not rerun
    assert {seed for _, _, seed in calls} == {0}  # one seed for every candidate: same data order
    first = {tuple(np.flatnonzero(m)) for m, steps, _ in calls if steps == 2}
    best = max(first, key=lambda kept: -sum(w for i, w in enumerate(AFTER) if i not in kept))
    assert tuple(result.kept) == best  # the best candidate by the scorer wins (no noise)
    assert rounds[0]["scores"][0]["origin"] == "bk-sdm" and result.settings["winner_origin"] in ("bk-sdm", "random-min",
                                                                                               "screened")
    assert result.cost["forward_passes"] >= sum(steps * 4 for _, steps, _ in calls)
    assert problem.space.contains(result.mask) or sum(result.mask) == problem.space.num_kept


def test_race_decides_by_recovery_not_by_the_calibration_loss():
    problem = additive_problem()
    problem.candidate_score = planted_scorer([])
    result = get_strategy("race", candidates=40, screen=400, first_steps=1, rules=[]).search(problem, seed=1)
    masks = [m for m in itertools.product((0, 1), repeat=8) if problem.space.contains(np.array(m))]
    by_calibration = min(masks, key=planted_loss)
    by_recovery = min(masks, key=lambda m: sum(w for w, v in zip(AFTER, m) if not v))
    assert by_calibration != by_recovery
    assert list(result.mask) == list(by_recovery)  # 400 screened draws cover the space's 36 masks


def test_race_screens_draws_by_calibration_loss():
    problem = additive_problem()
    calls: list = []
    problem.candidate_score = planted_scorer(calls)
    result = get_strategy("race", candidates=3, screen=50, first_steps=1, rules=[]).search(problem, seed=0)
    entered = [tuple(int(v) for v in np.flatnonzero(m)) for m, steps, _ in calls if steps == 1]
    draws = {tuple(np.flatnonzero(m)): m for m in problem.space.sample(50, np.random.default_rng(0))}
    lowest = sorted(draws, key=lambda kept: planted_loss(draws[kept]))[:3]
    assert entered == lowest  # the three lowest calibration losses of the 50 draws, best first
    assert result.cost["forward_passes"] > sum(steps * 4 for _, steps, _ in calls)  # the screen is paid for


def test_race_settings_and_missing_scorer_are_clear_errors():
    with pytest.raises(StrategyError, match="eta must be at least 2"):
        get_strategy("race", eta=1)
    with pytest.raises(StrategyError, match="not rule-based strategies"):
        get_strategy("race", rules=["race"])
    with pytest.raises(StrategyError, match="candidate_score"):
        get_strategy("race", candidates=2, rules=[]).search(additive_problem(), seed=0)
    assert len(COSTS) == len(AFTER)


def test_race_runs_through_pruneseek_search(tmp_path, capsys):
    """The search command hands race its scorer (short recoveries on the validation split) and writes its mask."""
    import json

    from pruneseek.cli import main

    preset = tmp_path / "small-race.toml"
    preset.write_text('name = "race"\n\n[settings]\ncandidates = 2\nscreen = 2\nscore_batches = 1\nfirst_steps = 1\n'
                      'rules = ["bk-sdm"]\n')
    out = tmp_path / "race"
    assert main(["search", "--model", "tsdsr", "--ratio", "0.5", "--strategy", str(preset), "--crops", "8",
                 "--crop-size", "32", "--batch", "2", "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    mask = json.loads((out / "mask.json").read_text())
    race = mask["strategy"]["settings"]["race"]
    assert len(race) == 1 and len(race[0]["scores"]) == 2 and race[0]["steps"] == 1
    assert sum(mask["mask"]) == 12 and mask["strategy"]["name"] == "race"
