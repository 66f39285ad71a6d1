"""A pure circuit breaker (closed / open / half-open) with an injected clock.

Closed: calls go through; `failure_threshold` failures in a row open it. Open: calls are refused
until `cool_down_s` has passed, then it is half-open. Half-open: up to `half_open_probes` calls go
through; one success closes it, one failure opens it again for another cool-down. A caller that got
a probe but never used it (the turn was cancelled) hands it back with `release()`.
"""

from __future__ import annotations

import enum
import time
from typing import Callable


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        cool_down_s: float = 30.0,
        half_open_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or half_open_probes < 1 or cool_down_s < 0:
            raise ValueError("failure_threshold and half_open_probes must be >= 1, cool_down_s >= 0")
        self.failure_threshold = failure_threshold
        self.cool_down_s = cool_down_s
        self.half_open_probes = half_open_probes
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures_in_row = 0
        self._opened_at_s = 0.0
        self._probes_out = 0
        self.times_opened = 0  # for metrics
        self.calls_refused = 0  # for metrics

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at_s >= self.cool_down_s:
            self._state = BreakerState.HALF_OPEN
            self._probes_out = 0
        return self._state

    def allow(self) -> bool:
        """May a call go through now? In half-open, a True takes one probe slot."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes_out < self.half_open_probes:
            self._probes_out += 1
            return True
        self.calls_refused += 1
        return False

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures_in_row = 0
        self._probes_out = 0

    def record_failure(self) -> None:
        state = self.state
        self._failures_in_row += 1
        if state is BreakerState.HALF_OPEN or self._failures_in_row >= self.failure_threshold:
            self._open()

    def release(self) -> None:
        """Hand back a half-open probe that ended with neither success nor failure."""
        if self._state is BreakerState.HALF_OPEN and self._probes_out > 0:
            self._probes_out -= 1

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at_s = self._clock()
        self._probes_out = 0
        self.times_opened += 1
