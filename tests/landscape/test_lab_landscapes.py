"""Landscape generators: planted optima where asked and unique, calibrated landscapes exact on their data."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneseek.landscape import (
    LandscapeError,
    QuadraticLandscape,
    calibrated,
    make_landscape,
    planted,
    random_quadratic,
    solve,
)
from pruneseek.spaces import BlockSpace, TransferSpace

SPACE = BlockSpace.uniform(12, 4, 2)  # 3 blocks; pairs topology = (0, 1) with block 2 unpaired
TRANSFER = TransferSpace(SPACE, 1, "pairs")


@pytest.mark.parametrize("inside,outside", [(True, "transfer"), (False, "transfer"), (False, "far")])
@pytest.mark.parametrize("ruggedness,coupling", [(0.0, 0.0), (0.5, 0.0), (3.0, 0.0), (0.0, 2.0), (0.5, 1.0)])
def test_planted_optimum_is_unique_and_placed(inside, outside, ruggedness, coupling):
    for seed in range(3):
        L = planted(SPACE, inside=inside, ruggedness=ruggedness, seed=seed, outside=outside, coupling=coupling)
        target = np.array(L.meta["planted"])
        sol = solve(L, SPACE, TRANSFER)
        assert (sol.optimum == target).all()
        assert sol.unique and sol.gap > 0
        assert 0 <= L.meta["ruggedness_effective"] <= ruggedness + 1e-12
        if inside:
            assert SPACE.contains(target)
        elif outside == "transfer":
            assert not SPACE.contains(target) and TRANSFER.contains(target)
            # exactly one layer moved between the two blocks of the pair
            assert sorted(SPACE.block_counts(target)[:2]) == [1, 3]
        else:
            assert not TRANSFER.contains(target)
        # the margin: every other mask is worse by at least 5 % of its planted signal, which is ≥ 2·d(m)
        enum = sol.enumeration
        d = enum.values(QuadraticLandscape((1 - target).astype(float), np.zeros((12, 12))))
        others = d > 0.5
        assert (sol.values[others] - sol.value >= 0.05 * 2 * d[others] - 1e-9).all()


def test_coupling_scrambles_per_layer_terms_but_keeps_the_optimum():
    L = planted(SPACE, True, 0.0, seed=4, coupling=3.0)
    target = np.array(L.meta["planted"])
    assert L.W.any()
    assert (solve(L, SPACE).optimum == target).all()
    # ranking layers by a_i alone no longer recovers m* for at least one of a few seeds
    misses = 0
    for seed in range(5):
        L = planted(SPACE, True, 0.0, seed=seed, coupling=3.0)
        top = np.zeros(12, dtype=int)
        top[np.argsort(L.a)[:6]] = 1
        misses += not (top == np.array(L.meta["planted"])).all()
    assert misses > 0


def test_ruggedness_zero_is_pure_signal_and_large_ruggedness_is_capped():
    L0 = planted(SPACE, True, 0.0, seed=1)
    target = np.array(L0.meta["planted"])
    assert np.allclose(L0.a, np.where(target == 1, -1.0, 1.0)) and not L0.W.any()
    L = planted(SPACE, True, 50.0, seed=1)
    assert L.meta["capped"] and L.meta["ruggedness_effective"] < 50.0


def test_generators_are_deterministic_in_seed():
    for family in ("inside", "transfer", "far", "random"):
        a = make_landscape(family, SPACE, 7)
        b = make_landscape(family, SPACE, 7)
        c = make_landscape(family, SPACE, 8)
        assert np.array_equal(a.a, b.a) and np.array_equal(a.W, b.W)
        assert not np.array_equal(a.a, c.a)
    assert random_quadratic(SPACE, 3).meta["family"] == "random-quadratic"
    with pytest.raises(LandscapeError, match="unknown landscape family"):
        make_landscape("nope", SPACE, 0)


def test_no_transfer_placement_without_a_pair():
    single = BlockSpace([(4, 2)])
    with pytest.raises(LandscapeError, match="no transfer"):
        planted(single, inside=False, seed=0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**16))
def test_calibrated_reproduces_every_measurement_of_a_quadratic(n, seed):
    rng = np.random.default_rng(seed)
    truth = QuadraticLandscape(rng.normal(size=n), np.triu(rng.normal(size=(n, n)), 1), float(rng.normal()))
    full = np.ones(n)
    base = truth.evaluate(full)

    def loss_without(*dropped):
        m = full.copy()
        m[list(dropped)] = 0
        return truth.evaluate(m)

    d1 = np.array([loss_without(i) - base for i in range(n)])
    d2 = np.zeros((n, n))
    for i, j in itertools.combinations(range(n), 2):
        d2[i, j] = d2[j, i] = loss_without(i, j) - base
    model = calibrated(d1, d2, base_loss=base)
    # a quadratic is its own second-order model: every mask agrees, not just the measured ones
    masks = np.array(list(itertools.product((0, 1), repeat=n)), dtype=float)
    np.testing.assert_allclose(model.evaluate(masks), truth.evaluate(masks), atol=1e-9)
    np.testing.assert_allclose(model.drop_one(), d1, atol=1e-9)


def test_calibrated_and_quadratic_validate_their_input():
    with pytest.raises(LandscapeError, match="symmetric"):
        calibrated([0.1, 0.2], [[0, 1.0], [2.0, 0]])
    with pytest.raises(LandscapeError, match="2×2"):
        calibrated([0.1, 0.2], np.zeros((3, 3)))
    with pytest.raises(LandscapeError, match="strictly upper-triangular"):
        QuadraticLandscape(np.zeros(2), np.ones((2, 2)))
    S = np.array([[0.0, 2.0], [2.0, 0.0]])
    L = QuadraticLandscape.from_symmetric([1.0, -1.0], S)
    assert L.evaluate([1, 1]) == pytest.approx(2.0)
    np.testing.assert_allclose(L.gradient([1, 1]), [3.0, 1.0])
    assert QuadraticLandscape.from_dict(L.to_dict()).evaluate([1, 1]) == pytest.approx(2.0)
