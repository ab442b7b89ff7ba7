"""The demo's duration estimate (butter._demo_forecast): the corpus size times per-item costs, scaled by the
machine's slowness, plus fixed waits; corrected by the rates each phase shows."""

from __future__ import annotations

import pytest

from butter._demo_forecast import COST, Forecast, duration, work_sample


def forecast(slowness: float = 1.0) -> Forecast:
    return Forecast(nodes=20, items=1000, kills=6, repair=5.0, slowness=slowness)


def test_the_estimate_is_the_work_times_the_slowness_plus_the_waits() -> None:
    quick, slow = forecast(1.0), forecast(2.0)
    waits = sum(quick.wait(phase) for phase in ("overlay", "churn", "retrieve"))
    assert waits == 20 * 0.2 + 6 * 5.0 + 1.0
    assert slow.remaining() - waits == pytest.approx(2 * (quick.remaining() - waits))
    assert quick.left_of("retrieve") == pytest.approx(1.0 + 1000 * COST["retrieve"])


def test_a_phase_that_ran_slow_makes_the_rest_slower() -> None:
    guess = forecast(1.0)
    before = guess.left_of("retrieve")
    guess.observe("overlay", 30.0)  # waiting, mostly: says nothing about the machine
    assert guess.slowness == 1.0
    guess.observe("replicate", 3 * guess.work("replicate"))  # three times the reference
    assert guess.slowness == pytest.approx(3.0)
    assert guess.left_of("retrieve") == pytest.approx(1.0 + 3 * (before - 1.0))
    assert guess.left_of("replicate") == 0.0


def test_the_kills_done_predict_the_kills_left() -> None:
    guess = forecast()
    guess.observe_kill(20.0)
    guess.observe_kill(30.0)
    assert guess.left_of("churn") == pytest.approx(25.0 * 4)


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (42, 150, 3900)] == ["42 s", "about 2 min", "about 1 h 5 min"]
    assert 0 < work_sample() < 5
