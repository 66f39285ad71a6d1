"""Admission from measured capacity: recent turns' latency opens and closes a worker's door.

Each finished turn reports its server-side latency from the end of the user's turn to the first
reply audio sent (`turn.metrics`' voice-to-voice less its endpointing stage: the user's pause and
the turn-taking policy are not load). Over the last `window_turns` turns no older than
`window_s`, the door closes when their p90 passes `target_p90_ms` and opens again once it is back
under `reopen_fraction` of it (hysteresis, so the door does not flap at the line). With fewer
than `min_turns` recent turns nothing is known and the door is open: old turns age out, so an
idle worker does not stay shut, and the p90 is the lower nearest rank, so one slow turn alone
never closes it. The session host clears the window when its last session leaves (what was
measured described a load that is gone) and keeps `server.max_sessions` as the hard ceiling;
sessions already admitted are never dropped.

The worker's event-loop lag (app/loop_lag.py) closes the door too, with the same hysteresis, when
its recent p90 passes `max_loop_lag_ms`: a saturated loop delays every session's audio before any
turn has finished to show it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from voice_pipeline.app.loop_lag import LoopLag
from voice_pipeline.app.settings import Settings

TARGET_SHARE_OF_FIRST_AUDIO_BUDGET = 0.5  # admit_p90_ms = 0: half of budgets.first_audio_ms


def target_p90_ms(settings: Settings) -> float:
    """`server.admit_p90_ms`, with 0 meaning half the first-audio budget (past which a filler
    plays) and a negative value meaning admission by count only."""
    configured = settings.server.admit_p90_ms
    if configured < 0:
        return 0.0
    return float(configured) if configured else TARGET_SHARE_OF_FIRST_AUDIO_BUDGET * settings.budgets.first_audio_ms


def turn_latency_ms(summary: Mapping[str, Any]) -> float | None:
    """A turn's server-side time from the end of the user's turn to its first reply audio sent
    (None: no audio was sent)."""
    v2v = summary.get("voice_to_voice_ms")
    if v2v is None:
        return None
    endpointing = (summary.get("stages_ms") or {}).get("endpointing", 0.0)
    return max(0.0, float(v2v) - float(endpointing))


def lower_p90(values: list[float]) -> float:
    """The p90 by the lower nearest rank: a value at most 10 % of the others exceed."""
    ordered = sorted(values)
    return ordered[math.floor(0.9 * (len(ordered) - 1))]


class Capacity:
    def __init__(self, target_p90_ms: float, *, reopen_fraction: float = 0.8, window_turns: int = 20,
                 window_s: float = 30.0, min_turns: int = 5, clock: Callable[[], float] = time.monotonic,
                 loop_lag: LoopLag | None = None, max_loop_lag_ms: float = 0.0) -> None:
        self.target_p90_ms = target_p90_ms  # 0: off (the door never closes)
        self.reopen_fraction, self.window_s, self.min_turns = reopen_fraction, window_s, max(1, min_turns)
        self.loop_lag, self.max_loop_lag_ms = loop_lag, max_loop_lag_ms  # 0: the lag is not looked at
        self._clock = clock
        self._turns: deque[tuple[float, float]] = deque(maxlen=max(1, window_turns))  # (t, latency ms)
        self._open = True

    @classmethod
    def from_settings(cls, settings: Settings, loop_lag: LoopLag | None = None) -> Capacity:
        return cls(target_p90_ms(settings), loop_lag=loop_lag, max_loop_lag_ms=max(0, settings.server.admit_loop_lag_ms))

    @property
    def enabled(self) -> bool:
        return self.target_p90_ms > 0

    def observe_turn(self, summary: Mapping[str, Any]) -> None:
        """A finished turn's `turn.metrics` summary (PipelineMetrics calls this)."""
        latency_ms = turn_latency_ms(summary)
        if latency_ms is not None:
            self.add(latency_ms)

    def add(self, latency_ms: float) -> None:
        self._turns.append((self._clock(), latency_ms))
        self._update()

    def clear(self) -> None:
        """Forget every measurement: the door opens."""
        self._turns.clear()
        self._open = True

    def admits(self) -> bool:
        """Whether the door is open now (old turns age out as time passes)."""
        self._update()
        return self._open

    def p90_ms(self) -> float | None:
        """The recent turns' p90, or None when there are fewer than `min_turns` of them."""
        self._forget_old()
        if len(self._turns) < self.min_turns:
            return None
        return lower_p90([latency for _, latency in self._turns])

    def turns(self) -> int:
        self._forget_old()
        return len(self._turns)

    def loop_lag_ms(self) -> float | None:
        """The event loop's recent lag p90, when admission looks at it and enough is known."""
        return self.loop_lag.p90_ms() if self.loop_lag is not None and self.max_loop_lag_ms > 0 else None

    def reason(self) -> str:
        """Why the door is shut, for a refusal's message (no user content: figures only)."""
        lag = self.loop_lag_ms()
        if lag is not None and lag > self.reopen_fraction * self.max_loop_lag_ms:
            return (f"the server is at its measured capacity: its event loop runs {lag:.0f} ms late at p90, "
                    f"above its {self.max_loop_lag_ms:.0f} ms limit")
        p90 = self.p90_ms()
        measured = "unknown" if p90 is None else f"{p90:.0f} ms"
        return (f"the server is at its measured capacity: recent replies took {measured} at p90 from the end "
                f"of a turn to the first audio ({self.turns()} turns), above its {self.target_p90_ms:.0f} ms target")

    def _update(self) -> None:
        over, under = [], []  # each measure: past its line; back under its reopening line
        if self.enabled:
            p90 = self.p90_ms()
            over.append(p90 is not None and p90 > self.target_p90_ms)
            under.append(p90 is None or p90 <= self.reopen_fraction * self.target_p90_ms)
        if self.max_loop_lag_ms > 0 and self.loop_lag is not None:
            lag = self.loop_lag_ms()
            over.append(lag is not None and lag > self.max_loop_lag_ms)
            under.append(lag is None or lag <= self.reopen_fraction * self.max_loop_lag_ms)
        if self._open and any(over):
            self._open = False
        elif not self._open and all(under):
            self._open = True

    def _forget_old(self) -> None:
        horizon = self._clock() - self.window_s
        while self._turns and self._turns[0][0] < horizon:
            self._turns.popleft()
