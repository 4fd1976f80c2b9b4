"""Argument types shared by sub-commands: each rejects bad input with a one-line argparse error."""
from __future__ import annotations

import argparse
from typing import Callable


def _number(cast: type, adjective: str, minimum: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: ``cast(text)``, refusing values below ``minimum`` (or equal to it, if not inclusive)."""
    noun = "integer" if cast is int else "number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {adjective} {noun}, got {text!r}") from None
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected a {adjective} {noun}, got {value:g}")
        return value

    return parse


positive_int = _number(int, "positive", 1, inclusive=True)
nonnegative_int = _number(int, "non-negative", 0, inclusive=True)
nonnegative_float = _number(float, "non-negative", 0.0, inclusive=True)
positive_float = _number(float, "positive", 0.0, inclusive=False)


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a ratio in [0, 1) such as 0.5, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"the ratio is the fraction of layers removed and must lie in [0, 1), got {value:g}"
        )
    return value
