"""Guards for gaps the mutation check (scripts/reliability/mutations.py) found: each test catches a realistic
bug that the rest of the suite let through. Tiny inputs only; the whole file runs in seconds."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pruneseek.errors import SpaceError
from pruneseek.maskfile import MaskFile, MaskFileError
from pruneseek.spaces import BlockSpace, TransferSpace
from pruneseek.spaces.ratio import keep_for_ratio, space_for_ratio


# ----- spaces: a ratio never removes every layer of a block -------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.996, 0.999])
def test_a_ratio_near_one_is_refused_not_rounded_to_removing_a_whole_block(ratio):
    with pytest.raises(SpaceError, match="cannot be realised"):
        keep_for_ratio(ratio, 4)
    with pytest.raises(SpaceError, match="cannot be realised"):
        space_for_ratio(24, 4, ratio)


def test_unrealisable_ratio_suggests_only_ratios_that_keep_a_layer():
    with pytest.raises(SpaceError) as info:
        keep_for_ratio(0.9, 4)
    message = str(info.value)
    assert "0.75 (keep 1 of 4" in message
    assert "keep 0" not in message


# ----- transfers: a block with exactly k eligible layers can still corrode / expand -----------------------------
def test_marginal_rule_moves_a_block_holding_exactly_k_eligible_layers():
    from pruneseek.engine import marginal_candidates

    current = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 0], [1.0, 1, 0, 0]])
    pi = torch.tensor([0.9, 0.2, 0.4, 0.5])
    drop, can_corrode, add, can_expand = marginal_candidates(current, pi, 1)
    assert can_corrode[0] and drop[0].tolist() == [1, 0, 0, 0]  # its only kept layer
    assert can_expand[1] and add[1].tolist() == [0, 0, 0, 1]  # its only dropped layer
    drop, can_corrode, add, can_expand = marginal_candidates(current[2:], pi, 2)  # k = 2 = kept = dropped
    assert can_corrode.all() and can_expand.all()
    assert drop.tolist() == [[1, 1, 0, 0]] and add.tolist() == [[0, 0, 1, 1]]


def test_transfer_samples_reach_every_reachable_mask_of_a_tight_space():
    from pruneseek.engine import MaskLearner, TransferGates

    space = BlockSpace([(2, 1), (2, 1)])  # each block keeps 1 = k: a transfer moves its only kept layer
    reach = TransferSpace(space, 1, "pairs")
    reachable = {m for m in itertools.product((0, 1), repeat=4) if sum(m) == 2 and reach.contains(m)}
    assert len(reachable) == reach.size() == 6
    learner = MaskLearner(space, TransferGates(space, "pairs", k=1, rule="marginal"))
    masks = learner.sample(256, 4.0, 1.0, torch.Generator().manual_seed(0)).detach().int().numpy()
    assert {tuple(int(v) for v in row) for row in masks} == reachable


# ----- mask file: option probabilities must sum to 1, from below as well as above -------------------------------
def test_mask_file_probabilities_summing_below_one_are_refused():
    space = BlockSpace.uniform(8, 4, 2)
    probabilities = [[1 / 6] * 6, [1 / 6] * 6]
    doc = MaskFile.from_mask([1, 0, 1, 0, 0, 1, 1, 0], "toy", "tinyfusion", space=space,
                             probabilities=probabilities).to_json()
    MaskFile.from_json(doc)  # the valid file loads
    doc["probabilities"][0] = [0.1] * 6
    with pytest.raises(MaskFileError, match=r"probabilities\[0\].*sums to 0\.6"):
        MaskFile.from_json(doc)
    doc["probabilities"][0] = list(np.full(6, 0.5))
    with pytest.raises(MaskFileError, match="sums to 3"):
        MaskFile.from_json(doc)


# ----- metrics: SSIM against an independent single-window computation -------------------------------------------
def test_ssim_of_one_window_matches_the_formula_by_hand():
    from pruneseek.metrics import ssim

    rng = np.random.default_rng(0)
    x = rng.random((11, 11))
    y = np.clip(x + 0.1 * rng.standard_normal((11, 11)), 0, 1)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / g.sum() ** 2
    mx, my = (w * x).sum(), (w * y).sum()
    sxx, syy, sxy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2, (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    got = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])  # one channel: no luminance mix
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(expected, rel=1e-9)
    assert 0.3 < expected < 0.99  # a pair where the structure term, and so C2, matters


# ----- data pipeline: each training pair draws its own crop and degradation --------------------------------------
def test_training_pairs_of_one_image_differ_by_index(tmp_path):
    from PIL import Image

    from pruneseek.data.images import SRPairs

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    pairs = SRPairs([tmp_path / "a.png"], hr_size=32, scale=4, seed=0)
    items = [pairs[i] for i in range(4)]  # all from the one image
    assert len({hr.numpy().tobytes() for hr, _ in items}) == 4
    assert len({lr.numpy().tobytes() for _, lr in items}) == 4
    again = SRPairs([tmp_path / "a.png"], hr_size=32, scale=4, seed=0)[2]
    assert torch.equal(again[0], items[2][0]) and torch.equal(again[1], items[2][1])


def test_degrading_a_non_square_image_keeps_its_orientation():
    from pruneseek.data.degrade import degrade

    hr = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        assert degrade(hr, rng=seed).shape == (3, 16, 24)
        assert degrade(hr.transpose(1, 2), rng=seed).shape == (3, 24, 16)


# ----- landscape: the greedy sensitivity baseline re-measures after every removal -----------------------------------
def _greedy_by_evaluation(landscape, space):
    """Drop, one at a time, the layer whose removal leaves f lowest (blocks still above s_j only)."""
    mask = np.ones(space.num_layers, dtype=np.uint8)
    for _ in range(space.num_layers - space.num_kept):
        counts = space.block_counts(mask)
        allowed = [i for j, b in enumerate(space.blocks) if counts[j] > b.keep
                   for i in range(b.start, b.stop) if mask[i]]
        values = [landscape.evaluate(np.where(np.arange(len(mask)) == i, 0, mask)) for i in allowed]
        mask[allowed[int(np.argmin(values))]] = 0
    return mask


def test_greedy_sensitivity_baseline_matches_greedy_by_evaluation_and_is_not_one_shot():
    from pruneseek.landscape.baselines import run_baseline
    from pruneseek.landscape.landscapes import random_quadratic

    space = BlockSpace.uniform(8, 4, 2)
    differs = 0
    for seed in range(12):
        landscape = random_quadratic(space, seed=seed)
        greedy = run_baseline("sensitivity-greedy", landscape, space)
        np.testing.assert_array_equal(greedy, _greedy_by_evaluation(landscape, space))
        differs += not np.array_equal(greedy, run_baseline("sensitivity", landscape, space))
    assert differs  # on some of these landscapes re-measuring changes the decision
