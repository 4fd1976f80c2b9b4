"""Pruning ratios: from ``--ratio`` to a block-factored space (docs/design.md §3).

The ratio r is the fraction of layers removed (r = 0.5 on 24 layers keeps 12). Each block keeps a whole
number of layers, so a block of B layers realises only the ratios (B − s) / B. A ratio written to two
decimals (0.33, 0.67, as in TinySR Table C.2) names the realisable ratio within ``RATIO_TOLERANCE`` of
it; anything else is an error naming the nearest realisable ratios, never a silent rounding.
"""
from __future__ import annotations

from fractions import Fraction

from pruneseek.errors import SpaceError
from pruneseek.spaces.blocks import BlockSpace

#: How far a written ratio may lie from the exact realisable one (half of 0.01: two-decimal ratios).
RATIO_TOLERANCE = Fraction(1, 200)


def _fmt(r: Fraction) -> str:
    return f"{float(r):.4g}"


def check_ratio(ratio: float | Fraction) -> Fraction:
    """A ratio as an exact fraction, refusing values outside [0, 1)."""
    try:
        value = Fraction(ratio).limit_denominator(10_000)
    except (TypeError, ValueError):
        raise SpaceError(f"ratio must be a number in [0, 1), got {ratio!r}") from None
    if not 0 <= value < 1:
        raise SpaceError(f"ratio is the fraction of layers removed and must lie in [0, 1), got {_fmt(value)}")
    return value


def keep_for_ratio(ratio: float | Fraction, size: int, what: str = "block", layers: int | None = None) -> int:
    """How many of ``size`` layers to keep so that (size − keep) / size realises ``ratio``."""
    r = check_ratio(ratio)
    options = {s: Fraction(size - s, size) for s in range(size, 0, -1)}  # keep ≥ 1: removing all is no model
    for keep, realised in options.items():
        if abs(realised - r) <= RATIO_TOLERANCE:
            return keep
    below = max((q for q in options.values() if q < r), default=None)
    above = min((q for q in options.values() if q > r), default=None)
    total = layers or size

    def option(q: Fraction) -> str:
        keep = size - int(q * size)
        return f"{_fmt(q)} (keep {keep} of {size} per {what}, {keep * (total // size)} of {total} layers)"

    nearest = " and ".join(option(q) for q in (below, above) if q is not None)
    raise SpaceError(
        f"ratio {_fmt(r)} cannot be realised with {what}s of {size} layers (each {what} keeps a whole number "
        f"of layers); nearest realisable: {nearest}"
    )


def space_for_ratio(layers: int, block: int, ratio: float | Fraction) -> BlockSpace:
    """The uniform block-factored space of ``layers / block`` blocks realising ``ratio``."""
    BlockSpace.uniform(layers, block, 0)  # validates layers and block first, with their own messages
    return BlockSpace.uniform(layers, block, keep_for_ratio(ratio, block, layers=layers))


def realisable_ratios(block: int) -> list[Fraction]:
    """Every ratio a block of ``block`` layers realises, ascending (keeping at least one layer)."""
    return sorted(Fraction(block - s, block) for s in range(1, block + 1))
