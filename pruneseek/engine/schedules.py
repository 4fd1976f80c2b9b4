"""Hyperparameter schedules, optax style (docs/design.md §4).

A schedule is a pure function ``step -> float``. Constructors take the number of steps over which
they move; after the last step a schedule holds its end value. The reference defaults (TinyFusion)
are τ linear 4 → 0.1 over the run and a constant logit scaling of 100: see :func:`default_tau` and
:func:`default_scaling`.

Schedules can also be described by plain data (for strategy settings and TOML files) and built with
:func:`make_schedule`: a number is a constant, a mapping ``{"kind": "linear", "start": 4, "end": 0.1}``
(``steps`` defaults to the run's length) is the named constructor.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Mapping, Sequence

from pruneseek import recipes
from pruneseek.errors import EngineError

Schedule = Callable[[int], float]

#: Reference τ annealing (TinyFusion): 4 → 0.1, linear over the run.
TAU_START, TAU_END = recipes.TAU_START, recipes.TAU_END
#: Reference logit scaling (TinyFusion): constant 100.
SCALING = 100.0


def _check_steps(steps: int) -> int:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise EngineError(f"a schedule needs a positive whole number of steps, got {steps!r}")
    return steps


def _fraction(step: int, steps: int) -> float:
    """Progress in [0, 1]: 0 at step 0, 1 at step ``steps - 1`` and after."""
    if steps == 1:
        return 1.0
    return min(max(step, 0), steps - 1) / (steps - 1)


def constant(value: float) -> Schedule:
    """``step -> value``."""
    value = float(value)

    def schedule(step: int) -> float:
        return value

    return schedule


def linear(start: float, end: float, steps: int) -> Schedule:
    """``start`` at step 0, ``end`` at step ``steps - 1`` and after, linear in between."""
    start, end, steps = float(start), float(end), _check_steps(steps)

    def schedule(step: int) -> float:
        return start + (end - start) * _fraction(step, steps)

    return schedule


def cosine(start: float, end: float, steps: int) -> Schedule:
    """Half-cosine from ``start`` (step 0) to ``end`` (step ``steps - 1``), then ``end``."""
    start, end, steps = float(start), float(end), _check_steps(steps)

    def schedule(step: int) -> float:
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * _fraction(step, steps)))

    return schedule


def exponential(start: float, end: float, steps: int) -> Schedule:
    """Geometric from ``start`` (step 0) to ``end`` (step ``steps - 1``), then ``end``; needs start·end > 0."""
    start, end, steps = float(start), float(end), _check_steps(steps)
    if start * end <= 0:
        raise EngineError(
            f"an exponential schedule moves between two values of the same sign, neither zero; got {start} → {end}"
        )
    ratio = end / start

    def schedule(step: int) -> float:
        t = _fraction(step, steps)
        return end if t == 1.0 else start * ratio**t

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Like ``optax.join_schedules``: schedule i runs from ``boundaries[i-1]``, fed ``step - boundaries[i-1]``."""
    schedules, boundaries = list(schedules), [int(b) for b in boundaries]
    if len(schedules) != len(boundaries) + 1:
        raise EngineError(
            f"join needs one more schedule than boundaries, got {len(schedules)} schedules and "
            f"{len(boundaries)} boundaries"
        )
    if boundaries != sorted(boundaries):
        raise EngineError(f"join boundaries must be ascending, got {boundaries}")

    def schedule(step: int) -> float:
        i = bisect.bisect_right(boundaries, step)
        return schedules[i](step - (boundaries[i - 1] if i else 0))

    return schedule


_KINDS = {"constant", "linear", "cosine", "exponential", "join"}


def make_schedule(spec: Any, steps: int) -> Schedule:
    """A schedule from a number, a callable, or a mapping ``{"kind": ..., ...}`` (steps default to ``steps``).

    ``{"kind": "join", "schedules": [spec, ...], "boundaries": [b, ...]}`` joins nested specs.
    """
    if callable(spec):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return constant(spec)
    if isinstance(spec, Mapping):
        kind = spec.get("kind")
        if kind not in _KINDS:
            raise EngineError(f"unknown schedule kind {kind!r}; use one of {sorted(_KINDS)}")
        try:
            if kind == "constant":
                return constant(spec["value"])
            if kind == "join":
                return join([make_schedule(s, steps) for s in spec["schedules"]], spec["boundaries"])
            ctor = {"linear": linear, "cosine": cosine, "exponential": exponential}[kind]
            return ctor(spec["start"], spec["end"], int(spec.get("steps", steps)))
        except KeyError as missing:
            raise EngineError(f"a {kind} schedule needs the field {missing}; got {dict(spec)}") from None
    raise EngineError(f"cannot read a schedule from {spec!r}; give a number, a callable or a mapping with 'kind'")


def default_tau(steps: int) -> Schedule:
    """TinyFusion's temperature: linear 4 → 0.1 over ``steps``."""
    return linear(TAU_START, TAU_END, steps)


def default_scaling(steps: int | None = None) -> Schedule:
    """TinyFusion's logit scaling: constant 100."""
    return constant(SCALING)


def anneal_sigma(step: int | float, total: int | float) -> float:
    """PocketSR's annealing coefficient σ(t) = max(0, (T − t)/T) (arXiv:2510.03012 §3.2.1, its ``min`` read as
    ``max``): 1 at t = 0, 0.5 at T/2, 0 from t = T on. ``total`` ≤ 0 means no annealing (σ = 0)."""
    if step < 0:
        raise EngineError(f"anneal_sigma: the step must be ≥ 0, got {step}")
    if total <= 0:
        return 0.0
    return float(max(0.0, min(1.0, (total - step) / total)))

