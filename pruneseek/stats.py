"""Intervals and verdicts for quality claims (docs/design.md §6.7).

Every quality number pruneseek reports comes with a 95 % percentile-bootstrap interval (Efron & Tibshirani,
1993). Two sources of noise are resampled:

- the **crops** of the held-out set (which images and degradations happened to be drawn);
- the **seeds** of a strategy's search and recovery (which run of the procedure happened to be made).

A table of values ``(seeds, crops)`` is resampled on both axes at once (:func:`two_level`): seed rows with
replacement, crop columns with replacement, the same crop columns for every seed row. Two tables compared
(:func:`paired_difference`) share the resampled indices, so a crop that is hard for both cancels: the
interval is that of the *paired* difference. A difference whose interval contains zero is a tie.

Pure functions of numpy arrays; the seed of the resampling is fixed, so a report is reproducible.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000


def _bounds(stats: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def interval(values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0,
             level: float = LEVEL) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (items resampled with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"interval needs a non-empty list of numbers, got shape {x.shape}")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    return _bounds(x[idx].mean(axis=1), level)


def resamples_2d(seeds: int, crops: int, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(resamples, seeds)`` and ``(resamples, crops)``: per resample the seed rows and crop columns,
    each drawn with replacement; reproducible per ``seed`` (so tables of one shape share them)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, seeds, size=(resamples, seeds)), rng.integers(0, crops, size=(resamples, crops))


def resampled_means(values, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """The mean of a ``(seeds, crops)`` table under each of :func:`resamples_2d`'s resamples."""
    x = _table(values)
    rows, cols = resamples_2d(*x.shape, resamples, seed)
    return x[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2))


def _table(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"a table of (seeds, crops) values is needed, got shape {x.shape}")
    return x


def two_level(values, resamples: int = RESAMPLES, seed: int = 0,
              level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the mean of a ``(seeds, crops)`` table, resampling seeds and crops.

    A 1-D input is one seed. With one seed only the crops are resampled (the interval then ignores run-to-run
    noise; callers say so).
    """
    return (float(_table(values).mean()), *_bounds(resampled_means(values, resamples, seed), level))


def paired_difference(a, b, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``mean(a) − mean(b)`` for two ``(seeds, crops)`` tables paired by crop and seed
    index (the same resampled indices for both)."""
    x, y = _table(a), _table(b)
    if x.shape != y.shape:
        raise ValueError(f"paired tables must have the same shape (seeds, crops), got {x.shape} and {y.shape}")
    return two_level(x - y, resamples, seed, level)


def verdict(low: float, high: float, higher_is_better: bool = True) -> str:
    """"better", "worse" or "tie" for a difference whose interval is ``[low, high]``."""
    if low <= 0 <= high:
        return "tie"
    return "better" if (low > 0) == higher_is_better else "worse"
