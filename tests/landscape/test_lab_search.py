"""JAX searches (pruneseek.landscape.search_jax) against the numpy reference, and their behaviour."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pruneseek.landscape import LandscapeError, make_landscape, planted, solve
from pruneseek.landscape import reference as ref
from pruneseek.landscape.baselines import sensitivity, sensitivity_greedy, shortgpt
from pruneseek.landscape.search_jax import (
    SearchConfig,
    _decide,
    candidate_vectors,
    hard_gumbel_softmax,
    log_marginals,
    marginals,
    objective,
    run_jax,
    space_arrays,
    transfer_candidates,
)
from pruneseek.spaces import BlockSpace, TransferSpace

# Uneven blocks (options padded to 6), an unmovable block (4 keep 4) and an odd block out of the pairs.
UNEVEN = BlockSpace([(4, 2), (3, 1), (4, 2), (3, 2), (4, 4), (2, 1), (3, 1)])
SCALING = 100.0
# Small, fast settings shared by every search test (one compilation per algorithm and space).
FAST = SearchConfig(steps=150, samples=2, lr=1e-2)
SMALL = BlockSpace.uniform(8, 4, 2)  # 2 blocks, one pair


def random_theta(space, seed):
    arrays = space_arrays(space)
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 0.01, arrays.option_valid.shape).astype(np.float32)
    return arrays, theta


def sample_options(space, rng):
    return np.array([rng.integers(b.num_options) for b in space.blocks])


def test_marginals_match_reference_and_engine():
    for seed in range(5):
        arrays, theta = random_theta(UNEVEN, seed)
        pi = np.asarray(marginals(jnp.asarray(theta), arrays, SCALING))
        expected = ref.marginals(theta, UNEVEN, SCALING)
        np.testing.assert_allclose(pi, expected, rtol=1e-5, atol=1e-6)
        # per block the marginals add up to the number of kept layers
        for b in UNEVEN.blocks:
            assert pi[b.start:b.stop].sum() == pytest.approx(b.keep, rel=1e-5)
        np.testing.assert_allclose(np.exp(np.asarray(log_marginals(jnp.asarray(theta), arrays, SCALING))), pi,
                                   rtol=1e-6)
    import torch

    from pruneseek.engine.gates import marginals as torch_marginals

    probs = [torch.softmax(torch.tensor(theta[j, : b.num_options], dtype=torch.float64) * SCALING, -1)
             for j, b in enumerate(UNEVEN.blocks)]
    options = [torch.tensor(UNEVEN.options(j)) for j in range(UNEVEN.num_blocks)]
    np.testing.assert_allclose(torch_marginals(probs, options).numpy(), pi, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["marginal", "next-option"])
@pytest.mark.parametrize("topology", ["pairs", "0-2,1-5,3-6"])
def test_candidate_masks_match_reference(rule, topology):
    transfer = TransferSpace(UNEVEN, 1, topology)
    arrays = space_arrays(UNEVEN, 1, topology)
    q_valid = arrays.q_valid_marginal if rule == "marginal" else arrays.q_valid_next
    rng = np.random.default_rng(0)
    for trial in range(12):
        _, theta = random_theta(UNEVEN, trial)
        option_idx = sample_options(UNEVEN, rng)
        m = UNEVEN.unrank(option_idx).astype(np.float32)
        drop, add = candidate_vectors(jnp.asarray(theta), jnp.asarray(option_idx), jnp.asarray(m), arrays, rule,
                                      SCALING)
        cands = np.asarray(transfer_candidates(jnp.asarray(m), drop, add, arrays))
        expected = ref.candidates(theta, option_idx, UNEVEN, transfer, rule, SCALING)
        assert list(expected) == [tuple(e) for e in zip(arrays.first, arrays.second)]
        for e, (edge, want) in enumerate(expected.items()):
            assert list(q_valid[e]) == want["valid"], edge
            for c in range(3):
                if want["valid"][c]:
                    np.testing.assert_array_equal(cands[e, c], want["masks"][c], err_msg=f"{rule} {edge} {c}")
                    assert cands[e, c].sum() == UNEVEN.num_kept


@pytest.mark.parametrize("rule", ["marginal", "next-option"])
def test_decision_matches_reference(rule):
    transfer = TransferSpace(UNEVEN, 1, "pairs")
    arrays = space_arrays(UNEVEN, 1, "pairs")
    q_valid = arrays.q_valid_marginal if rule == "marginal" else arrays.q_valid_next
    cfg = SearchConfig(scaling=SCALING)
    rng = np.random.default_rng(1)
    for trial in range(10):
        _, theta = random_theta(UNEVEN, 100 + trial)
        q = rng.normal(size=(arrays.num_edges, 3)).astype(np.float32)
        if trial == 0:
            q[:] = 0.02  # exact ties: no transfer
        mask, choice = _decide({"theta": jnp.asarray(theta), "q": jnp.asarray(q)}, arrays, cfg, f"tinysr-{rule}")
        expected = ref.decide(theta, q, UNEVEN, transfer, SCALING, valid=q_valid)
        np.testing.assert_array_equal(np.asarray(mask), expected)
        assert transfer.contains(np.asarray(mask))
        if trial == 0:
            assert (np.asarray(choice) == 1).all() and UNEVEN.contains(np.asarray(mask))


def test_straight_through_forward_is_one_hot_and_backward_is_soft():
    logits = jnp.array([[0.1, -0.2, 0.05], [0.0, 0.3, -0.1]])
    valid = np.array([[True, True, True], [True, True, False]])
    key = jax.random.key(3)
    y = hard_gumbel_softmax(key, logits, valid, 2.0, 10.0)
    assert np.allclose(np.asarray(y).sum(-1), 1.0, atol=1e-6)
    assert set(np.round(np.asarray(y), 5).ravel()) <= {0.0, 1.0} and np.asarray(y)[1, 2] == 0.0
    w = jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])
    g = jax.grad(lambda l: jnp.sum(w * hard_gumbel_softmax(key, l, valid, 2.0, 10.0)))(logits)

    def soft(l):
        z = jnp.where(valid, (l * 10.0 + jax.random.gumbel(key, l.shape)) / 2.0, -1e9)
        return jnp.sum(w * jax.nn.softmax(z, -1))

    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(soft)(logits)), rtol=1e-5, atol=1e-6)


def test_objective_gradient_is_the_landscape_gradient():
    L = make_landscape("random", SMALL, 0)
    m = np.array([0.2, 1, 0, 0.7, 1, 0, 0.5, 1.0])
    g = jax.grad(lambda x: objective(jnp.asarray(L.a), jnp.asarray(L.W), x))(jnp.asarray(m))
    np.testing.assert_allclose(np.asarray(g), L.gradient(m), rtol=1e-5)
    assert float(objective(jnp.asarray(L.a), jnp.asarray(L.W), jnp.asarray(m))) == pytest.approx(
        L.evaluate(m) - L.c, rel=1e-5)


def _landscapes(family, seeds, space=SMALL, ruggedness=0.0):
    lands = [make_landscape(family, space, s, ruggedness=ruggedness) for s in seeds]
    return lands, np.stack([L.a for L in lands]), np.stack([L.W for L in lands])


@pytest.mark.parametrize("algorithm", ["tinyfusion", "tinysr-marginal", "tinysr-next-option", "random-min"])
def test_searches_are_deterministic_in_seed(algorithm):
    _, a, W = _landscapes("random", range(4))
    first = run_jax(algorithm, SMALL, a, W, [0, 1, 2, 3], FAST)
    again = run_jax(algorithm, SMALL, a, W, [0, 1, 2, 3], FAST)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    other = run_jax(algorithm, SMALL, a, W, [10, 11, 12, 13], FAST)
    if "theta" in first:
        assert not np.array_equal(first["theta"], other["theta"])
    assert (first["mask"].sum(axis=1) == SMALL.num_kept).all()


def test_tinyfusion_finds_a_planted_block_optimum_and_tinysr_one_transfer_outside():
    seeds = range(4)
    lands, a, W = _landscapes("inside", seeds)
    tf = run_jax("tinyfusion", SMALL, a, W, list(seeds), FAST)["mask"]
    assert all((m == np.array(L.meta["planted"])).all() for m, L in zip(tf, lands))
    lands, a, W = _landscapes("transfer", seeds)
    transfer = TransferSpace(SMALL, 1, "pairs")
    for alg in ("tinysr-marginal", "tinysr-next-option"):
        out = run_jax(alg, SMALL, a, W, list(seeds), FAST)
        hits = [(m == np.array(L.meta["planted"])).all() for m, L in zip(out["mask"], lands)]
        assert np.mean(hits) >= 3 / 4, alg
        assert all(transfer.contains(m) for m in out["mask"])
        assert (out["transforms"] != 1).mean() >= 3 / 4
    tf = run_jax("tinyfusion", SMALL, a, W, list(seeds), FAST)["mask"]
    assert all(SMALL.contains(m) for m in tf)  # block-local: it can never reach them


def test_random_min_and_baselines_stay_in_the_block_space():
    lands, a, W = _landscapes("random", range(4))
    rm = run_jax("random-min", SMALL, a, W, list(range(4)), SearchConfig(budget=2000))["mask"]
    for L, m in zip(lands, rm):
        sol = solve(L, SMALL)
        assert SMALL.contains(m)
        best_block = min(L.evaluate(x) for x in SMALL.enumerate())
        assert L.evaluate(m) == pytest.approx(best_block, abs=1e-5)  # 2000 draws over 36 masks
        assert SMALL.contains(sensitivity(L, SMALL)) and SMALL.contains(sensitivity_greedy(L, SMALL))
        assert shortgpt(L, SMALL).sum() == SMALL.num_kept
        assert sol.percentile(shortgpt(L, SMALL))[0] >= 0.0


def test_sensitivity_rules_by_hand():
    L = planted(SMALL, True, 0.0, seed=2)
    target = np.array(L.meta["planted"])
    for rule in (sensitivity, sensitivity_greedy, shortgpt):
        np.testing.assert_array_equal(rule(L, SMALL), target)
    # greedy re-measures: with a strong pair interaction the one-shot and greedy answers differ
    from pruneseek.landscape import QuadraticLandscape

    W = np.zeros((8, 8))
    W[0, 1] = 5.0  # keeping both 0 and 1 is expensive
    L = QuadraticLandscape(np.array([-3.0, -3.0, -1.0, 0, 0, 0, 0, 0]), W)
    one_shot, greedy = sensitivity(L, SMALL), sensitivity_greedy(L, SMALL)
    # one shot, from the full mask, dropping 0 or 1 each lowers f by 2, so both go: f = −1.
    np.testing.assert_array_equal(one_shot, [0, 0, 1, 1, 1, 1, 0, 0])
    # greedy drops 0 first, then re-measures: 1 alone is useful again (a_1 = −3) and stays: f = −4.
    np.testing.assert_array_equal(greedy, [0, 1, 1, 0, 0, 0, 1, 1])
    assert L.evaluate(one_shot) == pytest.approx(-1.0) and L.evaluate(greedy) == pytest.approx(-4.0)


def test_non_matching_topology_is_refused():
    with pytest.raises(LandscapeError, match="matching"):
        space_arrays(BlockSpace.uniform(12, 4, 2), 1, "chain")
