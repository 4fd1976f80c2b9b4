"""Known-answer and beyond-the-box searches through the strategy interface (tiny, seeded, CPU)."""
import sys

import pytest
import torch

from pruneseek.spaces import BlockSpace, TransferSpace
from pruneseek.strategies import Strategy, StrategyError, available, get_strategy

from engine_toys import toy_problem

SPACE = BlockSpace.uniform(8, 4, 2)
#: Needed blocks 1, 2 | 4, 7 — inside the block space (2 per block of 4).
IN_BOX = ["harmful", "needed", "needed", "identity", "needed", "identity", "harmful", "needed"]
#: Needed blocks 0, 1, 3 | 5 — three in block 0 and one in block 1: outside the block space, one transfer away.
OUT_OF_BOX = ["needed", "needed", "harmful", "needed", "harmful", "needed", "harmful", "identity"]
FAST = dict(weight_update="frozen", gate_lr=1e-2)


def test_registry():
    assert {"tinyfusion", "tinysr"} <= set(available())
    for name in ("tinyfusion", "tinysr"):
        strategy = get_strategy(name)
        assert isinstance(strategy, Strategy) and strategy.name == name
        assert strategy.source and strategy.settings["tau"] == {"kind": "linear", "start": 4.0, "end": 0.1}
        assert strategy.settings["scaling"] == 100.0 and strategy.settings["ema_decay"] == 0.999
    assert "TinyFusion" in sys.modules[type(get_strategy("tinyfusion")).__module__].__doc__
    assert "TinySR" in sys.modules[type(get_strategy("tinysr")).__module__].__doc__
    assert get_strategy("tinyfusion").settings["gate_lr"] == 10 * get_strategy("tinyfusion").settings["weight_lr"]
    assert get_strategy("tinysr", rule="next-option").settings["rule"] == "next-option"
    with pytest.raises(StrategyError, match="unknown strategy"):
        get_strategy("magic")
    with pytest.raises(StrategyError, match="rule"):
        get_strategy("tinysr", rule="random")
    with pytest.raises(StrategyError, match="no setting"):
        get_strategy("tinyfusion", rule="marginal")


@pytest.mark.parametrize("name", ["tinyfusion", "tinysr"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_known_answer_recovery_frozen(name, seed):
    problem, needed = toy_problem(IN_BOX, SPACE, steps=200, seed=seed)
    result = get_strategy(name, **FAST).search(problem, seed=seed)
    assert result.kept == needed
    assert result.steps == 200 and result.nonfinite_steps == 0
    assert result.settings["strategy"] == name


@pytest.mark.parametrize("name", ["tinyfusion", "tinysr"])
def test_known_answer_recovery_with_lora(name):
    problem, needed = toy_problem(IN_BOX, SPACE, steps=200, seed=0)
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    strategy = get_strategy(
        name, weight_update="lora", lora_rank=4, lora_alpha=4.0, weight_lr=1e-3, gate_lr=1e-2
    )
    result = strategy.search(problem, seed=0)
    assert result.kept == needed
    after = problem.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)


def in_box_optimum(problem):
    """Brute force over the 36 masks of the block space on a fresh batch: the best mask tinyfusion can reach."""
    x, y = next(problem.batches())
    best = None
    with torch.no_grad():
        for m in SPACE.enumerate():
            masks = torch.tensor(m, dtype=torch.float32).expand(x.shape[0], -1)
            loss = float(((problem.stack(x, masks) - y) ** 2).mean())
            if best is None or loss < best[0]:
                best = (loss, [i for i, v in enumerate(m) if v])
    return best[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beyond_the_box_tinysr_finds_what_tinyfusion_cannot(seed):
    """Optimum {0,1,3,5}: 3 kept in block 0, 1 in block 1 — outside 2 × (4 keep 2), one m⁺ transfer away.

    Measured (250 steps, frozen weights, gate lr 1e-2, seeds 0–9): tinyfusion chose the in-box optimum 10/10;
    tinysr "marginal" found {0,1,3,5} 10/10; tinysr "next-option" 8/10 (seeds 5 and 8 chose {0,1,3,7}: the
    right transfer, but block 1's final π ranked the identity block 7 above the needed block 5).
    """
    optimum = [0, 1, 3, 5]
    assert not SPACE.contains([int(i in optimum) for i in range(8)])
    assert TransferSpace(SPACE, 1, "pairs").contains([int(i in optimum) for i in range(8)])

    problem, needed = toy_problem(OUT_OF_BOX, SPACE, steps=250, seed=seed)
    assert needed == optimum
    tf = get_strategy("tinyfusion", **FAST).search(problem, seed=seed)
    assert SPACE.contains(tf.mask) and tf.kept != optimum
    assert tf.kept == in_box_optimum(problem)  # …and it is the best the block space offers
    assert tf.transfer is None

    for rule in ("marginal", "next-option"):
        problem, _ = toy_problem(OUT_OF_BOX, SPACE, steps=250, seed=seed)
        sr = get_strategy("tinysr", rule=rule, **FAST).search(problem, seed=seed)
        assert sr.kept == optimum, rule
        assert sr.transfer["choices"] == [1]  # m⁺: expand block 0, corrode block 1
        assert sr.transfer["counts"] == [3, 1]


@pytest.mark.parametrize("rule", ["marginal", "next-option"])
@pytest.mark.parametrize(
    "shape,topology",
    [([(4, 2)] * 4, "pairs"), ([(4, 2)] * 4, "chain"), ([(3, 1), (4, 2), (2, 1), (5, 3)], "chain")],
)
def test_tinysr_kept_count_every_sample_every_step_in_a_search(rule, shape, topology):
    space = BlockSpace(shape)
    kinds = (["needed", "harmful", "identity"] * 6)[: space.num_layers]
    problem, _ = toy_problem(kinds, space, steps=40, seed=0, batch=8, topology=topology)
    seen = []
    inner = problem.loss_fn

    def loss_fn(batch, masks, mode):
        hard = masks.detach()
        assert ((hard == 0) | (hard == 1)).all()
        assert (hard.sum(dim=1) == space.num_kept).all()
        seen.append(hard.clone())
        return inner(batch, masks, mode)

    problem.loss_fn = loss_fn
    result = get_strategy("tinysr", rule=rule, **FAST).search(problem, seed=0)
    assert len(seen) == 40 and sum(result.mask) == space.num_kept
    assert any(not space.contains(row) for m in seen for row in m.int().numpy())


def test_skip_mode_with_shared_masks_skips_blocks():
    problem, needed = toy_problem(IN_BOX, SPACE, steps=30, seed=0, batch=8)
    computed = []
    inner = problem.loss_fn

    def loss_fn(batch, masks, mode):
        assert mode == "skip"
        assert (masks == masks[0]).all()  # one mask per batch
        computed.append(problem.stack.computed_blocks(masks, mode))
        return inner(batch, masks, mode)

    problem.loss_fn = loss_fn
    get_strategy("tinysr", mode="skip", share_across_batch=True, **FAST).search(problem, seed=0)
    assert computed == [4] * 30  # every step computes only the 4 kept blocks of 8
