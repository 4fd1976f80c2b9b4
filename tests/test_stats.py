"""The bootstrap behind every interval pruneseek reports (pruneseek.stats, docs/design.md §6.7)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneseek.stats import interval, paired_difference, resampled_means, two_level, verdict


def test_constant_values_have_a_zero_width_interval():
    assert interval([2.0] * 5) == (2.0, 2.0)
    assert two_level(np.full((3, 7), 1.5)) == (1.5, 1.5, 1.5)


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(300):
        lo, hi = interval(rng.normal(0.0, 1.0, size=60), resamples=500, seed=k)
        hits += lo <= 0.0 <= hi
    assert 0.90 <= hits / 300 <= 0.99  # the percentile bootstrap is a little narrow at n = 60


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40))
def test_interval_lies_within_the_data_and_around_the_mean(values):
    lo, hi = interval(values, resamples=200)
    assert min(values) - 1e-9 <= lo <= hi <= max(values) + 1e-9


def test_resampling_seeds_widens_the_interval_when_runs_differ():
    rng = np.random.default_rng(1)
    crops = rng.normal(0.0, 1.0, size=100)
    table = np.stack([crops + shift for shift in (-1.0, 0.0, 1.0)])  # three runs that disagree by a lot
    _, lo2, hi2 = two_level(table)
    _, lo1, hi1 = two_level(table.mean(axis=0))  # the runs averaged away: crops only
    assert hi2 - lo2 > 2 * (hi1 - lo1)


def test_paired_difference_cancels_what_both_share():
    rng = np.random.default_rng(2)
    difficulty = rng.normal(0.0, 5.0, size=(2, 80))  # hard crops are hard for both
    a = difficulty + 0.3 + rng.normal(0.0, 0.1, size=(2, 80))
    b = difficulty + rng.normal(0.0, 0.1, size=(2, 80))
    diff, lo, hi = paired_difference(a, b)
    assert lo > 0.2 and hi < 0.4 and lo <= diff <= hi
    _, lo_a, hi_a = two_level(a)
    assert hi_a - lo_a > 10 * (hi - lo)  # unpaired, the shared difficulty would swamp the 0.3 difference


def test_tables_of_one_shape_share_their_resamples():
    x = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(resampled_means(x, 50, seed=3), resampled_means(x, 50, seed=3))
    assert not np.array_equal(resampled_means(x, 50, seed=3), resampled_means(x, 50, seed=4))


def test_verdicts_and_bad_input():
    assert verdict(-0.1, 0.2) == "tie" and verdict(0.1, 0.2) == "better" and verdict(-0.3, -0.1) == "worse"
    assert verdict(0.1, 0.2, higher_is_better=False) == "worse"
    with pytest.raises(ValueError, match="same shape"):
        paired_difference(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        interval([])
