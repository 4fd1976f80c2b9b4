"""The docs/design.md §6 baselines on small models whose answers are known by hand, their costs, and the CLI for all ten."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from pruneseek.engine import MaskedStack, SingleStream
from pruneseek.spaces import BlockSpace
from pruneseek.strategies import (
    SearchProblem,
    Strategy,
    StrategyError,
    available,
    get_strategy,
    strategy_class,
)
from pruneseek.engine.schedules import anneal_sigma
from pruneseek.errors import EngineError
from pruneseek.strategies.base import CostMeter, LearnedMaskStrategy, calibration_batches, calibration_loss
from pruneseek.strategies.bk_sdm import bk_sdm_keep

torch.set_num_threads(1)

BASELINES = ["random-min", "shortgpt", "flux-lite", "sensitivity", "snapfusion", "bk-sdm", "optuna-tpe", "annealing"]
SPACE = BlockSpace.uniform(8, 4, 2)
QUIET: dict = {}  # progress bars are a run option (SearchProblem.progress), not a strategy setting


def kept(mask) -> list[int]:
    return [i for i, v in enumerate(mask) if v]


# ----- toy 1: rotation blocks, BI and MSE known in closed form ---------------------------------------------


class RotBlock(nn.Module):
    """``x + a · R x`` with R a 90° rotation of every feature pair: R x ⟂ x and |R x| = |x| per token, so
    cos(x, y) = 1/√(1 + a²) for every token and |y|² = (1 + a²)|x|²."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return x + self.a * rotated


class Holder(nn.Module):
    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks


#: BI order (by |a|): 7, 1, 4, 6, 0, 3, 5, 2. MSE_i = a_i² Π_{j<i}(1 + a_j²) · mean x² puts layer 0 (after
#: no growth) below layer 6 (after the 1.5 block's growth): order 1, 7, 0, 4, 6, 3, 2, 5.
SCALES = [0.4, 0.2, 1.5, 0.6, 0.25, 0.8, 0.3, 0.1]


def rotation_problem(scales=SCALES, space=SPACE, batches=5, batch=4, tokens=6, dim=8):
    blocks = nn.ModuleList(RotBlock(a) for a in scales)
    stack = MaskedStack(blocks, SingleStream())
    gen = torch.Generator().manual_seed(0)
    data = [torch.randn(batch, tokens, dim, generator=gen, dtype=torch.float64) for _ in range(batches)]

    def loss_fn(x, masks, mode):
        return stack(x, masks, mode=mode).pow(2).mean()

    problem = SearchProblem(model=Holder(blocks), stack=stack, loss_fn=loss_fn, batches=lambda: iter(data), space=space)
    return problem, data


def expected_bi(scales):
    return [1 - 1 / math.sqrt(1 + a * a) for a in scales]


def expected_mse(scales, data):
    mean_sq = float(torch.cat([x.flatten() for x in data]).pow(2).mean())
    growth, out = 1.0, []
    for a in scales:
        out.append(a * a * growth * mean_sq)
        growth *= 1 + a * a
    return out


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"keep_last": False}, [0, 2, 3, 5]),  # drops the four lowest BI: 7, 1, 4, 6
        ({}, [2, 3, 5, 7]),  # keep_last (default): 7 stays, the next lowest (0) goes
        ({"scope": "space", "keep_last": False}, [2, 3, 5, 6]),  # per block: drop 1, 0 | 7, 4
        ({"scope": "space"}, [2, 3, 5, 7]),  # per block, 7 protected: drop 1, 0 | 4, 6
    ],
)
def test_shortgpt_drops_the_lowest_block_influence(settings, expected):
    problem, data = rotation_problem()
    result = get_strategy("shortgpt", score_batches=3, **settings).search(problem)
    assert np.allclose(result.scores, expected_bi(SCALES), rtol=1e-9, atol=1e-12)
    assert result.kept == expected
    assert result.cost["forward_passes"] == 3 * 4 and result.cost["block_evaluations"] == 8 * 3 * 4
    assert result.cost["backward_passes"] == 0 and result.cost["seconds"] > 0
    assert result.marginals == [float(v) for v in result.mask] and result.confidence == 1.0
    assert result.block_confidence == [1.0, 1.0] and result.probabilities == [] and result.steps == 0


def test_shortgpt_never_removes_the_last_block_even_when_it_is_the_most_redundant():
    scales = [0.5, 0.6, 0.7, 0.01]
    space = BlockSpace.full(4, 2)
    problem, _ = rotation_problem(scales, space)
    assert get_strategy("shortgpt").search(problem).kept == [2, 3]
    assert get_strategy("shortgpt", keep_last=False).search(problem).kept == [1, 2]


@pytest.mark.parametrize("scope, expected", [("global", [2, 3, 5, 6]), ("space", [2, 3, 5, 6])])
def test_flux_lite_drops_the_lowest_input_output_mse(scope, expected):
    problem, data = rotation_problem()
    result = get_strategy("flux-lite", score_batches=3, scope=scope).search(problem)
    assert np.allclose(result.scores, expected_mse(SCALES, data[:3]), rtol=1e-9)
    assert result.kept == expected
    shortgpt = get_strategy("shortgpt", score_batches=3, keep_last=False).search(problem)
    assert shortgpt.kept != result.kept  # MSE sees the growth of the state, BI does not


# ----- toy 2: additive blocks, the calibration loss of every mask known -------------------------------------


class AddBlock(nn.Module):
    """``x + lin(x)`` with zero weights and bias √w_i · e_i: dropping block i costs exactly w_i."""

    def __init__(self, dim: int, index: int, cost: float):
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.zero_()
            self.lin.bias[index] = math.sqrt(cost)

    def forward(self, x):
        return x + self.lin(x)


#: Planted cost of dropping each layer. Global optimum for 8 → 4: drop 6, 1, 3, 2 (0.5 + 1 + 2 + 4) → keep
#: [0, 4, 5, 7]; in 2 × (4 keep 2): drop 1, 3 | 6, 7 → keep [0, 2, 4, 5] (loss 9.5).
COSTS = [5.0, 1.0, 4.0, 2.0, 8.0, 7.0, 0.5, 6.0]


def additive_problem(costs=COSTS, space=SPACE, batches=4, batch=3):
    n = len(costs)
    blocks = nn.ModuleList(AddBlock(n, i, w) for i, w in enumerate(costs))
    stack = MaskedStack(blocks, SingleStream())
    shift = torch.tensor([math.sqrt(w) for w in costs])
    gen = torch.Generator().manual_seed(1)
    data = [torch.randn(batch, n, generator=gen) for _ in range(batches)]

    def loss_fn(x, masks, mode):
        return (stack(x, masks, mode=mode) - (x + shift)).pow(2).sum(-1).mean()

    problem = SearchProblem(model=Holder(blocks), stack=stack, loss_fn=loss_fn, batches=lambda: iter(data), space=space)
    return problem


def planted_loss(mask, costs=COSTS) -> float:
    return sum(w for w, m in zip(costs, mask) if not m)


def test_calibration_loss_batches_and_errors():
    problem = additive_problem()
    batches = calibration_batches(problem, 8)
    assert len(batches) == 4  # one pass holds only 4
    assert calibration_batches(problem, 2) == batches[:2]
    meter = CostMeter()
    mask = [1, 0, 1, 1, 0, 1, 1, 1]
    assert calibration_loss(problem, mask, batches, meter) == pytest.approx(planted_loss(mask), rel=1e-5)
    assert meter.forward_passes == 4 * 3 and meter.block_evaluations == 6 * 4 * 3
    problem.model.train()
    calibration_loss(problem, np.ones(8), batches)
    assert problem.model.training  # eval only while scoring
    with pytest.raises(StrategyError, match="0 or 1"):
        calibration_loss(problem, [2] * 8, batches)
    bad = additive_problem()
    bad.loss_fn = lambda x, masks, mode: torch.tensor(float("nan"))
    with pytest.raises(StrategyError, match=r"mask 11111111 .* is nan"):
        calibration_loss(bad, np.ones(8), batches)


@pytest.mark.parametrize("scope, expected", [("global", [0, 4, 5, 7]), ("space", [0, 2, 4, 5])])
def test_sensitivity_removes_the_least_sensitive_and_counts_its_passes(scope, expected):
    problem = additive_problem()
    result = get_strategy("sensitivity", score_batches=4, scope=scope, **QUIET).search(problem)
    assert np.allclose(result.scores, COSTS, rtol=1e-5)
    assert result.kept == expected
    n, b, size = 8, 4, 3
    assert result.cost["forward_passes"] == (n + 1) * b * size
    assert result.cost["block_evaluations"] == n * n * b * size  # full (n) + n drop-one forwards of n − 1
    assert len(result.loss_history) == n + 1 and result.loss_history[0] == pytest.approx(0.0, abs=1e-6)


def test_snapfusion_ranks_by_loss_per_latency_with_an_explicit_table():
    """Layer 7 costs 6 but saves 10× the time: ratio 0.6, so it goes second, where sensitivity keeps it."""
    latency = [1.0] * 7 + [10.0]
    problem = additive_problem()
    result = get_strategy("snapfusion", score_batches=2, latency=latency, **QUIET).search(problem)
    assert [t["removed"] for t in result.trajectory] == [6, 7, 1, 3]
    assert result.kept == [0, 2, 4, 5] != get_strategy("sensitivity", **QUIET).search(problem).kept
    assert [t["ratio"] for t in result.trajectory] == pytest.approx([0.5, 0.6, 1.0, 2.0], rel=1e-5)
    assert result.loss_history[-1] == pytest.approx(planted_loss(result.mask), rel=1e-5)
    evaluations = 1 + 8 + 7 + 6 + 5
    assert result.cost["forward_passes"] == evaluations * 2 * 3
    assert result.settings["latency_measured"] is False and result.settings["latency_table"] == latency
    # per block: block 1's two cheapest ratios are 6 (0.5) and 7 (0.6)
    space = get_strategy("snapfusion", score_batches=2, latency=latency, scope="space", **QUIET).search(problem)
    assert space.kept == [0, 2, 4, 5] and SPACE.contains(space.mask)
    with pytest.raises(StrategyError, match=r"latency\[2\] must be a positive number"):
        get_strategy("snapfusion", latency=[1.0, 1.0, 0.0] + [1.0] * 5, **QUIET).search(problem)


def test_snapfusion_measures_latency_and_robust_training_leaves_the_model_unchanged():
    problem = additive_problem()
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    strategy = get_strategy("snapfusion", score_batches=1, latency_repeats=2, robust_steps=2, **QUIET)
    result = strategy.search(problem, seed=3)
    table = result.settings["latency_table"]
    assert result.settings["latency_measured"] and len(table) == 8 and all(t > 0 for t in table)
    assert result.steps == 2 * 3  # after each removal but the last
    assert 0 < result.cost["backward_passes"] <= 6 * 3
    after = problem.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in problem.model.parameters())
    assert len(result.kept) == 4


def test_random_min_keeps_the_best_sampled_mask():
    problem = additive_problem()
    result = get_strategy("random-min", num_masks=150, score_batches=1, **QUIET).search(problem, seed=0)
    sampled = SPACE.sample(150, np.random.default_rng(0))
    best = min(sampled, key=planted_loss)
    assert result.kept == kept(best) == [0, 2, 4, 5]  # …which is the brute-force optimum of the 36 masks
    assert min(planted_loss(m) for m in SPACE.enumerate()) == planted_loss(best)
    distinct = len({m.tobytes() for m in sampled})
    assert result.settings["distinct_masks"] == distinct == len(result.loss_history)
    assert result.cost["forward_passes"] == distinct * 3
    other = get_strategy("random-min", num_masks=3, score_batches=1, **QUIET).search(problem, seed=1)
    assert SPACE.contains(other.mask)
    assert other.kept == kept(min(SPACE.sample(3, np.random.default_rng(1)), key=planted_loss))


def test_optuna_tpe_finds_the_brute_force_optimum_of_a_small_space():
    pytest.importorskip("optuna")
    problem = additive_problem()
    result = get_strategy("optuna-tpe", n_trials=40, score_batches=1, **QUIET).search(problem, seed=0)
    assert result.kept == [0, 2, 4, 5] and SPACE.contains(result.mask)
    assert result.settings["best_loss"] == pytest.approx(9.5, rel=1e-5)
    assert result.cost["forward_passes"] == result.settings["distinct_masks"] * 3 <= 40 * 3
    import optuna

    assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored after the run


def test_optuna_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(StrategyError, match="needs optuna.*pip install"):
        get_strategy("optuna-tpe", n_trials=1, **QUIET).search(additive_problem())


def test_bk_sdm_hand_rule():
    assert bk_sdm_keep(28, 14) == [0, 2, 4, 6, 8, 10, 12, 15, 17, 19, 21, 23, 25, 27]
    assert bk_sdm_keep(24, 12) == [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]
    assert bk_sdm_keep(24, 16) == [0, 1, 3, 4, 6, 7, 9, 10, 13, 14, 16, 17, 19, 20, 22, 23]
    assert bk_sdm_keep(24, 8) == [0, 3, 6, 9, 14, 17, 20, 23]
    with pytest.raises(StrategyError, match=r"cannot prune 24 → 9 layers.*groups of 8"):
        bk_sdm_keep(24, 9)
    with pytest.raises(StrategyError, match="cannot prune 7 → 3"):
        bk_sdm_keep(7, 3)  # no even split into encoder and decoder halves
    assert bk_sdm_keep(10, 4) == [0, 1, 8, 9]  # 2/5: one group of 5 per half
    problem = additive_problem(costs=[1.0] * 24, space=BlockSpace.uniform(24, 4, 2))
    result = get_strategy("bk-sdm").search(problem)
    assert result.kept == [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]
    assert result.cost["forward_passes"] == 0 and result.scores is None


def test_annealing_schedule_overrides_and_mask():
    assert anneal_sigma(0, 8000) == 1.0 and anneal_sigma(4000, 8000) == 0.5
    assert anneal_sigma(8000, 8000) == 0.0 and anneal_sigma(12000, 8000) == 0.0
    assert anneal_sigma(2, 8) == 0.75 and anneal_sigma(0, 0) == 0.0
    with pytest.raises(EngineError, match="step must be"):
        anneal_sigma(-1, 10)
    strategy = get_strategy("annealing", select_settings={"score_batches": 2})
    assert strategy.recovery_overrides() == {"anneal_steps": 8000}
    assert get_strategy("annealing", anneal_steps=100).recovery_overrides() == {"anneal_steps": 100}
    assert get_strategy("sensitivity").recovery_overrides() == {} == get_strategy("tinysr").recovery_overrides()
    problem = additive_problem()
    result = strategy.search(problem)
    base = get_strategy("sensitivity", score_batches=2, **QUIET).search(problem)
    assert result.mask == base.mask and result.settings["strategy"] == "annealing"
    assert result.settings["select_result"]["strategy"] == "sensitivity"
    wide = additive_problem(costs=[1.0] * 24, space=BlockSpace.uniform(24, 4, 2))
    bk = get_strategy("annealing", select="bk-sdm").search(wide)
    assert bk.kept == bk_sdm_keep(24, 12)
    for bad, match in (("annealing", "cannot be 'annealing'"), ("tinysr", "rule-based"), ("nope", "registered")):
        with pytest.raises(StrategyError, match=match):
            get_strategy("annealing", select=bad)


@pytest.mark.parametrize("name", ["shortgpt", "flux-lite", "sensitivity", "snapfusion"])
def test_scope_space_keeps_every_blocks_option_size(name):
    space = BlockSpace([(3, 1), (5, 3)])
    problem, _ = rotation_problem(scales=[0.3, 0.9, 0.1, 0.5, 0.05, 0.7, 0.2, 0.4], space=space)
    settings = {"latency": [1.0] * 8} if name == "snapfusion" else {}
    result = get_strategy(name, scope="space", score_batches=2, **settings).search(problem)
    assert space.contains(result.mask), result.kept
    wide = get_strategy(name, scope="global", score_batches=2, **settings).search(problem)
    assert sum(wide.mask) == 4
    with pytest.raises(StrategyError, match="scope must be one of"):
        get_strategy(name, scope="blocks")


def test_registry_holds_every_strategy_with_sources_and_module_docstrings():
    assert set(available()) == set(BASELINES) | {"tinyfusion", "tinysr", "race"}
    for name in BASELINES:
        strategy = get_strategy(name)
        assert isinstance(strategy, Strategy) and strategy.name == name and strategy.source
        assert not isinstance(strategy, LearnedMaskStrategy)
        doc = sys.modules[type(strategy).__module__].__doc__
        assert "Source" in doc and "Rule" in doc
    with pytest.raises(StrategyError, match="positive whole number"):
        get_strategy("random-min", num_masks=0)
    with pytest.raises(StrategyError, match="no setting"):
        get_strategy("bk-sdm", scope="space")


def test_learned_search_records_cost_and_a_marginal_trajectory():
    problem = additive_problem(batches=2, batch=4)
    problem.steps = 120
    result = get_strategy("tinyfusion", weight_update="frozen", gate_lr=1e-2).search(problem)
    assert result.cost["forward_passes"] == 120 * 4 == result.cost["backward_passes"]
    assert result.cost["block_evaluations"] == 120 * 4 * 8  # blend mode computes every block
    steps = [t["step"] for t in result.trajectory]
    assert steps == list(range(2, 121, 2))  # every max(1, 120 // 50) = 2 steps, the last included
    assert result.trajectory[-1]["marginals"] == pytest.approx(result.marginals)
    assert all(len(t["marginals"]) == 8 for t in result.trajectory)


def test_search_help_lists_every_registered_strategy(capsys):
    from pruneseek.cli import main
    from pruneseek.commands.search import STRATEGY_HELP

    assert sorted(STRATEGY_HELP) == available()
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    assert all(f"  {name} " in text for name in available())


# ----- the CLI: every strategy through `pruneseek search` on the bundled miniature's architecture ------------

TINY = {
    "random-min": 'num_masks = 3\nscore_batches = 1\n',
    "shortgpt": 'score_batches = 1\n',
    "flux-lite": 'score_batches = 1\nscope = "space"\n',
    "sensitivity": 'score_batches = 1\n',
    "snapfusion": 'score_batches = 1\nlatency_repeats = 1\nscope = "space"\n',
    "bk-sdm": '',
    "optuna-tpe": 'n_trials = 3\nscore_batches = 1\n',
    "annealing": 'anneal_steps = 50\n[settings.select_settings]\nscore_batches = 1\n',
}


@pytest.mark.parametrize("name", ["tinysr", "tinyfusion", *BASELINES])
def test_cli_search_runs_every_strategy(tmp_path, monkeypatch, weights, capsys, name):
    from pruneseek.cli import main
    from pruneseek.maskfile import MaskFile

    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path / "cache"))
    strategy = name
    if name in TINY:
        strategy = tmp_path / f"{name}.toml"
        strategy.write_text(f'name = "{name}"\n[settings]\n{TINY[name]}')
    out = tmp_path / "run"
    code = main(["search", "--ratio", "0.5", "--strategy", str(strategy), "--steps", "2", "--batch", "2",
                 "--crops", "4", "--crop-size", "32", "--weights", str(weights), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    mask = MaskFile.load(out / "mask.json")
    assert mask.num_kept == 12 and mask.strategy_name == name
    assert mask.settings["strategy"] == name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept"] == list(mask.keep) and summary["strategy"] == name
    assert set(summary["cost"]) == {"seconds", "forward_passes", "backward_passes", "block_evaluations"}
    assert (summary["cost"]["forward_passes"] > 0) == (name != "bk-sdm")
    if name in ("shortgpt", "flux-lite", "sensitivity"):
        assert len(summary["scores"]) == 24
    if name == "annealing":
        assert summary["recovery_overrides"] == {"anneal_steps": 50} and "anneal_steps" in printed
    if name in ("tinysr", "tinyfusion"):
        assert mask.steps == 2 and len(summary["trajectory"]) == 2
    assert f"wrote {out / 'mask.json'}" in printed


def test_cli_learned_flags_are_refused_for_rule_based_strategies(tmp_path, weights, capsys):
    from pruneseek.cli import main

    for flag, value, key in (("--mode", "skip", "mode"), ("--ema-decay", "0.9", "ema_decay"), ("--rule", "marginal", "rule")):
        assert main(["search", "--strategy", "bk-sdm", flag, value, "--weights", str(weights), "--quiet"]) == 2
        assert f"{flag} applies to strategies with a '{key}' setting" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "shortgpt"\n[settings]\nscope = "blocks"\n')
    assert main(["search", "--strategy", str(bad), "--weights", str(weights), "--quiet"]) == 2
    assert f"{bad}: field 'settings'" in capsys.readouterr().err
