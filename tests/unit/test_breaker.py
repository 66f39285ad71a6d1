"""Circuit breaker: every transition, driven by a fake clock."""

from __future__ import annotations

import pytest

from voice_pipeline.routing.breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kwargs) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cool_down_s=30.0, clock=clock, **kwargs)


def test_starts_closed_and_allows(clock: FakeClock) -> None:
    breaker = make(clock)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_opens_after_threshold_failures_in_a_row(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert (breaker.times_opened, breaker.calls_refused) == (1, 1)


def test_a_success_resets_the_count(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_after_cool_down_allows_one_probe(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 29.9
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now_s += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one probe at a time


def test_probe_success_closes(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 30
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_probe_failure_reopens_for_a_new_cool_down(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 30
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.times_opened == 2
    clock.now_s += 29
    assert breaker.state is BreakerState.OPEN
    clock.now_s += 1
    assert breaker.state is BreakerState.HALF_OPEN


def test_released_probe_can_be_taken_again(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 30
    assert breaker.allow()
    breaker.release()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_release_when_closed_changes_nothing(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.release()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_several_half_open_probes(clock: FakeClock) -> None:
    breaker = make(clock, half_open_probes=2)
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 30
    assert [breaker.allow() for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"half_open_probes": 0}, {"cool_down_s": -1}])
def test_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)
