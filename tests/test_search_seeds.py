"""`pruneseek search --seeds N`: the majority decision over seeds (pure function) and one small run end to end."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneseek.cli import main
from pruneseek.errors import SpaceError
from pruneseek.experiment.majority import agreement, majority_mask
from pruneseek.spaces import BlockSpace, TransferSpace


def keep_set(*kept: int, n: int) -> list[int]:
    return [1 if i in kept else 0 for i in range(n)]


def total(mask, masks) -> int:
    """Agreements of ``mask`` with the seeds' kept layers: Σ over its kept layers of the seeds keeping them."""
    counts = np.sum(np.asarray(masks), axis=0)
    return int(np.dot(counts, np.asarray(mask)))


# ----- the majority function ----------------------------------------------------------------------------------------

def test_unanimous_seeds_give_their_mask_and_frequencies_zero_or_one():
    space = BlockSpace.uniform(8, 4, 2)
    mask = keep_set(1, 2, 4, 7, n=8)
    decided, freq = majority_mask([mask] * 3, space)
    assert list(decided) == mask and freq == tuple(float(v) for v in mask)


def test_two_against_one_picks_the_majority_and_counts_frequencies():
    space = BlockSpace.uniform(8, 4, 2)
    a, b = keep_set(0, 1, 4, 5, n=8), keep_set(2, 3, 6, 7, n=8)
    for order in itertools.permutations([a, a, b]):
        decided, freq = majority_mask(list(order), space)
        assert list(decided) == a
        assert freq == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3] * 2)


def test_blocks_decide_separately_so_the_majority_may_mix_seeds():
    space = BlockSpace.uniform(8, 4, 2)
    seeds = [keep_set(0, 1, 4, 5, n=8), keep_set(0, 1, 6, 7, n=8), keep_set(2, 3, 6, 7, n=8)]
    assert majority_mask(seeds, space)[0] == tuple(keep_set(0, 1, 6, 7, n=8))
    seeds = [keep_set(0, 1, 4, 5, n=8), keep_set(0, 2, 6, 7, n=8), keep_set(2, 3, 4, 7, n=8)]
    # block 0: counts 2 1 2 1 → {0, 2}; block 1: counts 2 1 1 2 → {4, 7}; no seed chose that mask
    assert majority_mask(seeds, space)[0] == tuple(keep_set(0, 2, 4, 7, n=8))


def test_ties_go_to_the_option_more_seeds_chose_then_to_the_lowest_index():
    space = BlockSpace([(4, 2)])
    # every layer kept by half the seeds: (0, 3) and (1, 2) were each chosen twice; (0, 3) has the lower index,
    # and both beat (0, 1), which no seed chose
    seeds = [keep_set(1, 2, n=4), keep_set(0, 3, n=4)] * 2
    assert majority_mask(seeds, space)[0] == (1, 0, 0, 1)
    # counts 3 1 2 2: (0, 2) and (0, 3) tie on the summed count; (0, 3), chosen twice, beats (0, 2), chosen once
    seeds = [keep_set(0, 3, n=4), keep_set(0, 3, n=4), keep_set(0, 2, n=4), keep_set(1, 2, n=4)]
    assert majority_mask(seeds, space)[0] == (1, 0, 0, 1)
    # with one seed per option and no other tie-break the lowest option index wins; the seeds' order is irrelevant
    seeds = [keep_set(0, 1, n=4), keep_set(0, 2, n=4), keep_set(1, 2, n=4)]
    for order in itertools.permutations(seeds):
        assert majority_mask(list(order), space)[0] == (1, 1, 0, 0)


def test_full_space_takes_the_most_often_kept_layers_ties_to_lower_indices():
    space = BlockSpace.full(6, 3)
    seeds = [keep_set(0, 4, 5, n=6), keep_set(1, 4, 5, n=6), keep_set(2, 3, 5, n=6)]
    # counts 1 1 1 1 2 3: layers 5 and 4, then a tie of 0..3 → a seed's mask (0, 4, 5) and (1, 4, 5) tie → lowest
    decided, freq = majority_mask(seeds, space)
    assert decided == tuple(keep_set(0, 4, 5, n=6)) and freq == pytest.approx([1 / 3] * 4 + [2 / 3, 1])
    # no seed's mask reaches the best total: the lowest layer indices fill the tie
    seeds = [keep_set(0, 1, 5, n=6), keep_set(2, 3, 5, n=6), keep_set(1, 2, 4, n=6)]
    assert majority_mask(seeds, space)[0] == tuple(keep_set(1, 2, 5, n=6))


def test_transfer_space_majority_may_leave_the_block_space_and_stays_reachable():
    space = BlockSpace.uniform(8, 4, 2)
    transfer = TransferSpace(space, 1, "pairs")
    moved = keep_set(0, 1, 2, 5, n=8)  # block 0 keeps 3, block 1 keeps 1: one transfer
    inside = keep_set(0, 3, 5, 6, n=8)
    assert not space.contains(moved) and transfer.contains(moved)
    assert majority_mask([moved, moved, inside], transfer)[0] == tuple(moved)
    assert majority_mask([moved] * 2, transfer)[0] == tuple(moved)
    # without transfers the same seeds decide inside the block space
    decided = majority_mask([moved, moved, inside], space)[0]
    assert space.contains(decided) and decided == tuple(keep_set(0, 1, 5, 6, n=8))
    # a tie between count vectors goes to the one more seeds had
    other = keep_set(0, 5, 6, 7, n=8)  # block 0 keeps 1, block 1 keeps 3
    assert majority_mask([moved, other, other], transfer)[0] == tuple(other)


def test_bad_input_is_refused():
    space = BlockSpace.uniform(8, 4, 2)
    with pytest.raises(SpaceError, match="at least one mask"):
        majority_mask([], space)
    with pytest.raises(SpaceError, match="has 4 entries"):
        majority_mask([[1, 0, 1, 0]], space)
    with pytest.raises(SpaceError, match="other than 0"):
        majority_mask([[2] + [0] * 7], space)


def test_agreement_counts_layers_kept_or_dropped_by_every_seed():
    kept, dropped = agreement([keep_set(0, 1, 4, 5, n=8), keep_set(0, 2, 4, 6, n=8)])
    assert kept == [0, 4] and dropped == [3, 7]


SPACES = [BlockSpace.uniform(8, 4, 2), BlockSpace([(3, 1), (5, 3), (2, 1)]), BlockSpace.full(7, 3)]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_majority_is_a_best_mask_of_the_space(which, count, seed):
    space = SPACES[which]
    masks = space.sample(count, seed).tolist()
    decided, freq = majority_mask(masks, space)
    assert space.contains(decided) and sum(decided) == space.num_kept
    assert freq == pytest.approx(np.mean(masks, axis=0).tolist())
    best = max(total(m, masks) for m in space.enumerate())
    assert total(decided, masks) == best
    rng = np.random.default_rng(seed)
    assert majority_mask([masks[i] for i in rng.permutation(count)], space)[0] == decided
    kept, dropped = agreement(masks)
    assert all(decided[i] for i in kept) and not any(decided[i] for i in dropped)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_transfer_majority_is_a_best_reachable_mask(count, seed):
    transfer = TransferSpace(BlockSpace.uniform(8, 4, 2), 1, "pairs")
    reachable = [m for m in BlockSpace.full(8, 4).enumerate().tolist() if transfer.contains(m)]
    rng = np.random.default_rng(seed)
    masks = [reachable[i] for i in rng.integers(0, len(reachable), count)]
    decided, _ = majority_mask(masks, transfer)
    assert transfer.contains(decided) and sum(decided) == 4
    assert total(decided, masks) == max(total(m, masks) for m in reachable)


# ----- the command ---------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path / "cache"))


SMALL = ["--ratio", "0.5", "--steps", "2", "--batch", "2", "--crops", "2", "--crop-size", "32", "--quiet"]


def test_search_seeds_writes_each_seed_and_the_majority(tmp_path, weights, capsys):
    from pruneseek.export.folder import read_mask
    from pruneseek.maskfile import MaskFile

    out = tmp_path / "run"
    assert main(["search", *SMALL, "--seeds", "2", "--seed", "3", "--weights", str(weights), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    per_seed = [MaskFile.load(out / f"seed-{k}" / "mask.json") for k in (3, 4)]
    for k, mask in zip((3, 4), per_seed):
        assert mask.seed == k and (out / f"seed-{k}" / "summary.json").is_file()
        assert (out / f"seed-{k}" / "loss.png").read_bytes()[:4] == b"\x89PNG"
        assert f"seed {k}: kept {list(mask.keep)}" in printed
    majority = MaskFile.load(out / "mask.json")
    keep, loaded, _ = read_mask(out / "mask.json", "tsdsr-mini", 24)  # what `pruneseek export` reads
    assert loaded == majority and keep == list(majority.keep)
    assert majority.num_kept == 12 and majority.seed == 3 and majority.strategy_name == "tinysr"
    assert majority.transfer_space().contains(majority.mask)
    masks = [list(m.mask) for m in per_seed]
    assert majority.marginals == pytest.approx(np.mean(masks, axis=0).tolist())
    metrics = majority.extras["metrics"]
    kept_all, dropped_all = agreement(masks)
    assert metrics["seeds"] == [3, 4] and metrics["per_seed_masks"] == masks
    assert metrics["agree_all"] == len(kept_all) + len(dropped_all)
    assert f"majority over 2 seeds: kept {list(majority.keep)}" in printed
    assert (f"all 2 seeds agree on {metrics['agree_all']} of 24 layers (kept by all: {len(kept_all)}, "
            f"dropped by all: {len(dropped_all)})") in printed
    assert "keep frequency per layer, in seeds of 2 (blocks split by |): " in printed
    assert printed.count("estimated peak memory") == 1  # every seed's run has the same shape: estimated once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_seed_masks"] == masks and summary["kept"] == list(majority.keep)
    assert [s["seed"] for s in summary["per_seed"]] == [3, 4]


def test_seeds_refuses_resume_and_nproc(tmp_path, weights, capsys):
    assert main(["search", *SMALL, "--seeds", "2", "--resume", str(tmp_path), "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--seeds" in err and len(err.strip().splitlines()) == 1
    assert main(["search", *SMALL, "--seeds", "2", "--nproc", "2", "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "--nproc" in err and "--seeds" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--seeds", "0"])
    assert exit_.value.code == 2 and "argument --seeds: expected a positive integer" in capsys.readouterr().err
