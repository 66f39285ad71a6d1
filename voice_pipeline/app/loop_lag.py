"""How late a worker's event loop runs: the one measure of a worker whose loop is saturated.

Every session of a worker shares its one asyncio loop: audio in, the VAD's hand-offs, the reply's
paced audio out, the LLM's token stream. When that loop has more to do than one core can run, every
stage looks slow at once while the CPU as a whole and the GPU look idle (one suspect for what the
H100 machine showed at 16-64 sessions, not confirmed: docs/scaling.md). `LoopLag.run()` sleeps `interval_s` again and again
and records how much later than asked it woke; `p90_ms()` is over the last `window_s`. Exported
as `vp_event_loop_lag_seconds` and one of admission's inputs (app/capacity.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable


class LoopLag:
    def __init__(self, interval_s: float = 0.05, window_s: float = 10.0, min_samples: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.window_s, self.min_samples = interval_s, window_s, min_samples
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()  # (t, lag ms)

    async def run(self) -> None:
        """Sample until cancelled (the server runs it for its lifetime)."""
        while True:
            asked = self._clock()
            await asyncio.sleep(self.interval_s)
            self.add(max(0.0, 1000.0 * (self._clock() - asked - self.interval_s)))

    def add(self, lag_ms: float) -> None:
        self._samples.append((self._clock(), lag_ms))
        self._forget_old()

    def p90_ms(self) -> float | None:
        """The recent lag's p90 (lower nearest rank), or None with too few recent samples."""
        self._forget_old()
        if len(self._samples) < self.min_samples:
            return None
        ordered = sorted(lag for _, lag in self._samples)
        return ordered[math.floor(0.9 * (len(ordered) - 1))]

    def _forget_old(self) -> None:
        horizon = self._clock() - self.window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
