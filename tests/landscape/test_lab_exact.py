"""Exact enumeration, optimum and ranking of landscapes (pruneseek.landscape.exact), against brute force."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneseek.landscape import Enumeration, LandscapeError, QuadraticLandscape, combination_table, solve
from pruneseek.spaces import BlockSpace, TransferSpace


def random_landscape(n: int, seed: int) -> QuadraticLandscape:
    rng = np.random.default_rng(seed)
    return QuadraticLandscape(rng.normal(size=n), np.triu(rng.normal(size=(n, n)), 1), float(rng.normal()))


def brute(landscape: QuadraticLandscape, n: int, keep: int):
    """(masks, values) of every mask keeping ``keep`` of ``n``, by itertools and a direct formula."""
    masks, values = [], []
    for kept in itertools.combinations(range(n), keep):
        m = np.zeros(n)
        m[list(kept)] = 1
        v = landscape.c + sum(landscape.a[i] for i in kept) + sum(
            landscape.W[i, j] for i, j in itertools.combinations(kept, 2))
        masks.append(m.astype(np.uint8))
        values.append(v)
    return np.array(masks), np.array(values)


@pytest.mark.parametrize("n,r", [(0, 0), (5, 0), (5, 5), (6, 3), (7, 2)])
def test_combination_table_is_itertools_order(n, r):
    table = combination_table(n, r)
    expected = [tuple(np.flatnonzero(row)) for row in table]
    assert expected == list(itertools.combinations(range(n), r))
    assert table.shape == (math.comb(n, r), n)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 10), data=st.data())
def test_enumeration_matches_brute_force(n, data):
    keep = data.draw(st.integers(0, n))
    seed = data.draw(st.integers(0, 2**16))
    L = random_landscape(n, seed)
    enum = Enumeration(n, keep)
    assert enum.size == math.comb(n, keep)
    values = enum.values(L)
    masks = np.concatenate(list(enum.iter_masks(chunk=7)))
    # every mask exactly once, index order = iter_masks order, mask()/index_of() a bijection
    assert masks.shape == (enum.size, n)
    assert len({m.tobytes() for m in masks}) == enum.size
    assert (masks.sum(axis=1) == keep).all()
    for i in range(0, enum.size, max(1, enum.size // 17)):
        assert (enum.mask(i) == masks[i]).all()
        assert enum.index_of(masks[i]) == i
    np.testing.assert_allclose(values, L.evaluate(masks), rtol=1e-12, atol=1e-12)
    bm, bv = brute(L, n, keep)
    np.testing.assert_allclose(np.sort(values), np.sort(bv), rtol=1e-12, atol=1e-12)


def test_solution_optimum_percentile_and_subspaces_match_brute_force():
    space = BlockSpace([(3, 1), (3, 2), (4, 2), (2, 1)])  # uneven blocks, 12 layers keep 6
    transfer = TransferSpace(space, 1, "pairs")
    for seed in range(3):
        L = random_landscape(space.num_layers, seed)
        sol = solve(L, space, transfer)
        masks, values = brute(L, space.num_layers, space.num_kept)
        best = int(np.argmin(values))
        assert sol.value == pytest.approx(values[best], abs=1e-12)
        assert (sol.optimum == masks[best]).all()
        # percentile: fraction of masks strictly better, for a handful of masks (including ties of itself)
        pick = masks[[0, best, len(masks) // 2, len(masks) - 1]]
        expected = [np.mean(values < L.evaluate(m) - 1e-9) for m in pick]
        np.testing.assert_allclose(sol.percentile(pick), expected)
        assert sol.percentile(sol.optimum)[0] == 0.0
        assert sol.is_optimal(sol.optimum)[0]
        # many masks at once take the sorted path; same answers
        np.testing.assert_allclose(sol.percentile(masks[:40]), [np.mean(values < v - 1e-9) for v in values[:40]])
        in_block = np.array([space.contains(m) for m in masks])
        in_transfer = np.array([transfer.contains(m) for m in masks])
        assert sol.block_value == pytest.approx(values[in_block].min(), abs=1e-12)
        assert space.contains(sol.block_optimum)
        assert sol.transfer_value == pytest.approx(values[in_transfer].min(), abs=1e-12)
        assert transfer.contains(sol.transfer_optimum)
        assert sol.value <= sol.transfer_value <= sol.block_value
        second = np.sort(values)[1]
        assert sol.gap == pytest.approx(second - values[best], abs=1e-12)


def test_membership_counts_equal_space_sizes():
    space = BlockSpace.uniform(12, 3, 1)
    enum = Enumeration(12, 4)
    assert enum.membership(space).sum() == space.size()
    for k, topo in ((1, "pairs"), (1, "chain"), (2, "pairs")):
        transfer = TransferSpace(space, k, topo)
        assert enum.membership(transfer).sum() == transfer.size()


def test_errors_are_clear():
    enum = Enumeration(6, 3)
    with pytest.raises(LandscapeError, match="keeping 3"):
        enum.index_of([1, 1, 0, 0, 0, 0])
    with pytest.raises(LandscapeError, match="out of range"):
        enum.mask(enum.size)
    with pytest.raises(LandscapeError, match="exceeds the limit"):
        Enumeration(40, 20)
    sol = solve(random_landscape(6, 0), BlockSpace.uniform(6, 3, 1).full_space())
    with pytest.raises(LandscapeError, match="keep exactly"):
        sol.percentile([1, 1, 1, 1, 0, 0])


def test_c24_12_enumerates_and_scores_from_half_tables():
    L = random_landscape(24, 5)
    enum = Enumeration(24, 12)
    values = enum.values(L)
    assert values.shape == (2_704_156,)
    # why it takes ~0.05 s, not minutes: no per-mask table; each sector pairs a left and a right half-table of
    # 12-layer combinations (at most 2 · 2^12 rows in all) and scores the pairs as one matrix product
    assert enum.left == 12 and sum(lt.shape[0] + rt.shape[0] for _, lt, rt in enum.sectors) <= 2 * 2**12
    # spot-check against direct evaluation, and the optimum against a chunked direct scan of every mask
    rng = np.random.default_rng(0)
    idx = rng.integers(0, enum.size, 200)
    masks = np.stack([enum.mask(int(i)) for i in idx])
    np.testing.assert_allclose(values[idx], L.evaluate(masks), rtol=1e-10, atol=1e-10)
    best = min(float(L.evaluate(chunk).min()) for chunk in enum.iter_masks())
    assert values.min() == pytest.approx(best, abs=1e-9)
