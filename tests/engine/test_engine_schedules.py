import math

import pytest

from pruneseek.engine import (
    EngineError,
    constant,
    cosine,
    default_scaling,
    default_tau,
    exponential,
    join,
    linear,
    make_schedule,
)


def test_linear_reference_tau_hand_values():
    tau = linear(4.0, 0.1, 40)
    assert tau(0) == pytest.approx(4.0)
    assert tau(13) == pytest.approx(4.0 - 3.9 * 13 / 39)  # = 2.7
    assert tau(13) == pytest.approx(2.7)
    assert tau(39) == pytest.approx(0.1)
    assert tau(100) == pytest.approx(0.1)  # holds after the last step


def test_defaults_are_tinyfusion_reference():
    assert default_tau(40)(13) == pytest.approx(2.7)
    assert default_scaling()(0) == default_scaling()(10_000) == 100.0


def test_constant_cosine_exponential():
    assert constant(3)(0) == constant(3)(99) == 3.0
    c = cosine(4.0, 0.0, 3)
    assert (c(0), c(1), c(2), c(7)) == pytest.approx((4.0, 2.0, 0.0, 0.0))
    e = exponential(1.0, 0.01, 3)
    assert (e(0), e(1), e(2), e(5)) == pytest.approx((1.0, 0.1, 0.01, 0.01))
    with pytest.raises(EngineError):
        exponential(1.0, 0.0, 3)


def test_single_step_schedules_sit_at_the_end_value():
    assert linear(4, 0.1, 1)(0) == pytest.approx(0.1)


def test_join_like_optax():
    s = join([constant(1.0), linear(1.0, 0.0, 11)], [5])
    assert s(4) == 1.0
    assert s(5) == pytest.approx(1.0)  # second schedule sees step 0
    assert s(10) == pytest.approx(0.5)
    assert s(15) == pytest.approx(0.0)
    assert s(50) == pytest.approx(0.0)
    with pytest.raises(EngineError):
        join([constant(1.0)], [5])


def test_make_schedule_from_data():
    assert make_schedule(2.5, 10)(3) == 2.5
    lin = make_schedule({"kind": "linear", "start": 4, "end": 0.1}, 40)
    assert lin(13) == pytest.approx(2.7)
    joined = make_schedule(
        {
            "kind": "join",
            "schedules": [{"kind": "constant", "value": 2}, {"kind": "cosine", "start": 2, "end": 0, "steps": 3}],
            "boundaries": [2],
        },
        10,
    )
    assert (joined(1), joined(3), joined(9)) == pytest.approx((2.0, 1.0, 0.0))
    with pytest.raises(EngineError, match="unknown schedule kind"):
        make_schedule({"kind": "step"}, 10)
    with pytest.raises(EngineError, match="needs the field"):
        make_schedule({"kind": "linear", "start": 1}, 10)
    assert math.isclose(make_schedule(lambda s: s / 2, 10)(4), 2.0)
