"""Search-space cardinalities, rank/unrank and reachability (docs/design.md §3), pinned by property tests."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys
from collections import Counter
from fractions import Fraction

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneseek.errors import SpaceError
from pruneseek.spaces import (
    BlockSpace,
    TransferSpace,
    combination_rank,
    combination_unrank,
    keep_for_ratio,
    space_for_ratio,
)

# ----- strategies for hypothesis ----------------------------------------------------------------

block_pair = st.integers(1, 5).flatmap(lambda b: st.tuples(st.just(b), st.integers(0, b)))
small_spaces = st.lists(block_pair, min_size=1, max_size=4).map(BlockSpace)


def _small_enough(space: BlockSpace) -> bool:
    return space.full_size() <= 20_000


@st.composite
def spaces_with_topology(draw):
    space = draw(small_spaces.filter(lambda s: s.num_layers <= 12))
    k = space.num_blocks
    possible = [(j, h) for j in range(k) for h in range(j + 1, k)]
    edges = draw(st.lists(st.sampled_from(possible), unique=True)) if possible else []
    return space, edges


# ----- the TinySR numbers ----------------------------------------------------------------------


def test_tinysr_numbers():
    space = BlockSpace.uniform(24, 4, 2)
    assert space.full_size() == 2_704_156
    assert space.size() == 46_656 == 6**6
    assert space.fraction() == Fraction(46_656, 2_704_156)
    assert round(100 * float(space.fraction()), 3) == 1.725


def test_paper_presets_numbers():
    assert BlockSpace.uniform(24, 3, 2).size() == 3**8
    assert BlockSpace.uniform(24, 3, 1).size() == 3**8
    assert BlockSpace.uniform(28, 4, 2).size() == 6**7
    assert BlockSpace.uniform(28, 2, 1).size() == 2**14
    assert BlockSpace.uniform(28, 4, 2).full_size() == math.comb(28, 14)


def test_reference_pairs_reachable_size_by_hand():
    # Each pair of (4 keep 2) blocks with k=1: C(4,2)^2 + 2·C(4,1)·C(4,3) = 36 + 32 = 68 count combinations.
    space = BlockSpace.uniform(24, 4, 2)
    assert TransferSpace(space, 1, "pairs").size() == 68**3
    # k=2 adds the (0, 4) and (4, 0) splits: 68 + 2 = 70.
    assert TransferSpace(space, 2, "pairs").size() == 70**3
    assert TransferSpace(space, 0, "chain").size() == space.size()
    # chain, k = 1: each of the 5 edges moves -1, 0 or +1 layer; the flows fix every block's count c_i = 2 + f_in − f_out,
    # and the masks number Σ over flows of Π C(4, c_i) (distinct flows give distinct counts on a chain)
    flows = itertools.product((-1, 0, 1), repeat=5)
    by_flows = sum(math.prod(math.comb(4, 2 + a - b) for a, b in zip((0, *f), (*f, 0))) for f in flows)
    assert TransferSpace(space, 1, "chain").size() == by_flows == 1_487_968


# ----- block spaces: properties -----------------------------------------------------------------


@given(small_spaces)
def test_valid_size_is_product_of_binomials(space):
    assert space.size() == math.prod(math.comb(b, s) for b, s in space.shape)
    assert space.full_size() == math.comb(space.num_layers, space.num_kept)
    assert 0 < space.fraction() <= 1


@settings(max_examples=60)
@given(small_spaces.filter(lambda s: s.size() <= 5_000))
def test_enumeration_matches_size_and_definition(space):
    masks = space.enumerate()
    assert masks.shape == (space.size(), space.num_layers)
    assert len({m.tobytes() for m in masks}) == space.size()
    assert (masks.sum(axis=1) == space.num_kept).all()
    for j, b in enumerate(space.blocks):
        assert (masks[:, b.start : b.stop].sum(axis=1) == b.keep).all()
    # flat order: the mask at row i has flat index i
    for i in range(0, len(masks), max(1, len(masks) // 17)):
        assert space.flat_index(masks[i]) == i
        assert np.array_equal(space.from_flat_index(i), masks[i])


@settings(max_examples=60)
@given(small_spaces.filter(_small_enough))
def test_valid_masks_lie_in_full_space(space):
    full = {m.tobytes() for m in space.full_space().enumerate()}
    valid = space.enumerate()
    assert all(m.tobytes() in full for m in valid)
    assert len(full) == space.full_size()


@given(small_spaces, st.data())
def test_rank_unrank_round_trip(space, data):
    indices = tuple(data.draw(st.integers(0, b.num_options - 1)) for b in space.blocks)
    mask = space.unrank(indices)
    assert mask.sum() == space.num_kept
    assert space.contains(mask)
    assert space.rank(mask) == indices
    flat = space.flat_index(mask)
    assert np.array_equal(space.from_flat_index(flat), mask)


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_options_follow_itertools_order(n_s):
    size, keep = n_s
    space = BlockSpace([(size, keep)])
    table = space.options(0)
    for r, kept in enumerate(itertools.combinations(range(size), keep)):
        assert np.flatnonzero(table[r]).tolist() == list(kept)
        assert combination_rank(kept, size) == r
        assert combination_unrank(r, size, keep) == kept


def test_rank_unrank_on_full_tsdsr_space_without_tables():
    full = BlockSpace.full(24, 12)
    rng = np.random.default_rng(0)
    for index in rng.integers(0, full.size(), size=50):
        mask = full.from_flat_index(int(index))
        assert mask.sum() == 12 and full.flat_index(mask) == index
    assert np.flatnonzero(full.from_flat_index(0)).tolist() == list(range(12))
    assert np.flatnonzero(full.from_flat_index(full.size() - 1)).tolist() == list(range(12, 24))


def test_sampling_is_uniform():
    space = BlockSpace([(4, 2), (3, 1)])  # 18 masks
    masks = space.sample(18_000, rng=1)
    assert all(space.contains(m) for m in masks[:500])
    counts = Counter(space.flat_index(m) for m in masks)
    assert len(counts) == 18
    # chi-square goodness of fit with 17 dof: the 0.999 quantile is 40.8
    expected = 1000
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 40.8
    assert np.array_equal(space.sample(5, rng=3), space.sample(5, rng=3))


def test_enumeration_refuses_large_spaces():
    with pytest.raises(SpaceError, match="enumeration limit"):
        BlockSpace.full(40, 20).enumerate()
    with pytest.raises(SpaceError, match="enumeration limit of 10"):
        BlockSpace.uniform(8, 4, 2).enumerate(limit=10)


def test_chunked_iteration_covers_the_space():
    space = BlockSpace.uniform(12, 4, 2)
    chunks = list(space.iter_chunks(chunk=50))
    assert sum(len(c) for c in chunks) == space.size()
    assert np.array_equal(np.concatenate(chunks), space.enumerate())


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([], "at least one block"),
        ([(4, 5)], "keep must lie in 0..4"),
        ([(0, 0)], "size must be at least 1"),
        ([(4, -1)], "keep must lie in 0..4"),
        ([(4,)], "expected a \\(size, keep\\) pair"),
        ([(4.0, 2)], "must be integers"),
    ],
)
def test_bad_blocks_are_refused(blocks, message):
    with pytest.raises(SpaceError, match=message):
        BlockSpace(blocks)


def test_uniform_refuses_non_dividing_block():
    with pytest.raises(SpaceError, match=r"does not divide 24 layers; choose a block size from \[1, 2, 3, 4, 6"):
        BlockSpace.uniform(24, 5, 2)


def test_mask_shape_errors_are_clear():
    space = BlockSpace.uniform(8, 4, 2)
    with pytest.raises(SpaceError, match="has 8 entries"):
        space.rank([1, 0, 1])
    with pytest.raises(SpaceError, match="only 0"):
        space.rank([2, 0, 1, 0, 1, 1, 0, 0])
    with pytest.raises(SpaceError, match="keeps \\[3, 1\\] layers per block"):
        space.rank([1, 1, 1, 0, 1, 0, 0, 0])


# ----- transfer-reachable spaces ------------------------------------------------------------------


def _brute_force_reachable(space: BlockSpace, k: int, edges) -> set[bytes]:
    """Every full-space mask whose per-block counts some edge transfers |t_e| ≤ k realise (direct search)."""
    keeps = [b.keep for b in space.blocks]
    sizes = [b.size for b in space.blocks]
    reachable_counts = set()
    for flows in itertools.product(range(-k, k + 1), repeat=len(edges)):
        counts = list(keeps)
        for (j, h), t in zip(edges, flows):
            counts[j] -= t
            counts[h] += t
        if all(0 <= c <= b for c, b in zip(counts, sizes)):
            reachable_counts.add(tuple(counts))
    out = set()
    for mask in space.full_space().enumerate():
        if tuple(space.block_counts(mask)) in reachable_counts:
            out.add(mask.tobytes())
    return out


@settings(max_examples=40, deadline=None)
@given(spaces_with_topology().filter(lambda se: _small_enough(se[0])), st.integers(0, 2))
def test_reachable_size_matches_brute_force(space_edges, k):
    space, edges = space_edges
    transfer = TransferSpace(space, k, edges)
    brute = _brute_force_reachable(space, k, edges)
    assert transfer.size() == len(brute)
    # membership (decided by max-flow) agrees with the brute force on every full-space mask
    for mask in space.full_space().enumerate():
        assert transfer.contains(mask) == (mask.tobytes() in brute)


@settings(max_examples=40, deadline=None)
@given(spaces_with_topology(), st.integers(0, 3))
def test_reachable_is_nested(space_edges, k):
    space, edges = space_edges
    inner, outer = TransferSpace(space, k, edges), TransferSpace(space, k + 1, edges)
    assert space.size() <= inner.size() <= outer.size() <= space.full_size()
    for mask in space.sample(20, rng=k):
        assert inner.contains(mask)
    if space.full_size() <= 5_000:
        valid = {m.tobytes() for m in space.enumerate()}
        for mask in space.full_space().enumerate():
            if mask.tobytes() in valid:
                assert inner.contains(mask)
            if inner.contains(mask):
                assert outer.contains(mask)


def test_tree_dp_agrees_with_cycle_enumeration():
    # A triangle forces the cyclic counter; compare with brute force; the chain uses the tree DP.
    space = BlockSpace.uniform(9, 3, 1)
    for edges in ([(0, 1), (1, 2), (0, 2)], [(0, 1), (1, 2)]):
        for k in (1, 2):
            assert TransferSpace(space, k, edges).size() == len(_brute_force_reachable(space, k, edges))


def test_topologies():
    space = BlockSpace.uniform(24, 4, 2)
    assert sorted(TransferSpace(space, 1, "pairs").graph.edges) == [(0, 1), (2, 3), (4, 5)]
    assert sorted(TransferSpace(space, 1, "chain").graph.edges) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    user = TransferSpace(space, 1, nx.Graph([(0, 5), (1, 4)]))
    assert user.topology == "0-5,1-4"
    assert TransferSpace(BlockSpace.uniform(12, 4, 2), 1, "pairs").topology == "pairs"
    with pytest.raises(SpaceError, match="unknown topology"):
        TransferSpace(space, 1, "ring")
    with pytest.raises(SpaceError, match="names block 6"):
        TransferSpace(space, 1, "0-6")
    with pytest.raises(SpaceError, match="joins a block to itself"):
        TransferSpace(space, 1, [(2, 2)])
    with pytest.raises(SpaceError, match="non-negative"):
        TransferSpace(space, -1)


def test_reachable_masks_outside_the_box():
    space = BlockSpace.uniform(8, 4, 2)
    transfer = TransferSpace(space, 1, "pairs")
    beyond = np.array([1, 1, 1, 0, 1, 0, 0, 0])  # 3 + 1 kept: one transfer away
    assert not space.contains(beyond)
    assert transfer.contains(beyond)
    assert not transfer.contains(np.array([1, 1, 1, 1, 0, 0, 0, 0]))  # needs k = 2
    assert TransferSpace(space, 2, "pairs").contains(np.array([1, 1, 1, 1, 0, 0, 0, 0]))
    assert not transfer.contains(np.array([1, 1, 1, 0, 1, 1, 0, 0]))  # wrong total


# ----- ratios -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers, block, ratio, keep",
    [(24, 4, 0.5, 2), (24, 3, 0.33, 2), (24, 3, 0.67, 1), (28, 4, 0.5, 2), (24, 3, 1 / 3, 2), (24, 4, 0, 4)],
)
def test_ratio_to_space(layers, block, ratio, keep):
    assert space_for_ratio(layers, block, ratio) == BlockSpace.uniform(layers, block, keep)


def test_unrealisable_ratio_names_the_nearest():
    with pytest.raises(SpaceError) as info:
        space_for_ratio(24, 4, 0.3)
    message = str(info.value)
    assert "ratio 0.3 cannot be realised with blocks of 4 layers" in message
    assert "0.25 (keep 3 of 4 per block, 18 of 24 layers)" in message
    assert "0.5 (keep 2 of 4 per block, 12 of 24 layers)" in message


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_out_of_range(ratio):
    with pytest.raises(SpaceError, match=r"must lie in \[0, 1\)"):
        keep_for_ratio(ratio, 4)


def test_spaces_do_not_import_torch():
    code = "import sys, pruneseek.spaces; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
