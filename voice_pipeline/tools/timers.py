"""Timers and reminders that fire later in the session: "set a timer for 10 seconds", "remind me in 5
minutes to call Sam", "cancel the timer".

The tools only say what will happen and return an effect (`StartTimer`, `CancelTimers`); the
session applies it once the reply is really given (a speculated reply that is thrown away sets
nothing), through its `SessionTimers`, which owns every pending timer and cancels them all when the
session ends. A timer that goes off while the user is speaking, or a reply is running, waits for them.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable

from voice_pipeline.spoken_numbers import say_value
from voice_pipeline.tools.registry import Tool, ToolContext, ToolResult, tool_from_function

MAX_TIMER_S = 24 * 3600.0
_UNIT_S = {"hour": 3600.0, "minute": 60.0, "min": 60.0, "second": 1.0, "sec": 1.0}
_PART = r"(?:\d+(?:\.\d+)?|an?|half an?) (?:hours?|minutes?|mins?|seconds?|secs?)(?: and a half)?"
DURATION = rf"{_PART}(?:(?:,| and) {_PART})*"
_PIECE = re.compile(r"(\d+(?:\.\d+)?|an?|half an?) (hour|minute|min|second|sec)s?( and a half)?")
_SET = [re.compile(form) for form in (
    rf"(?:(?:can|could) you |please )?(?:set|start|make|put on|give me)(?: me)? (?:a |an |the |my )?timer (?:for|of) (?P<d>{DURATION})",
    rf"(?:(?:can|could) you |please )?(?:set|start|make|put on)(?: me)? (?:a |an )?(?P<d>{DURATION}) timer",
    rf"(?:a |an )?timer (?:for )?(?P<d>{DURATION})",
    rf"(?:a |an )?(?P<d>{DURATION}) timer(?: please)?",
    rf"(?:(?:can|could) you )?(?:remind|tell) me in (?P<d>{DURATION}) (?:to |that |about )(?P<what>.+)",
    rf"(?:(?:can|could) you )?(?:remind|tell) me (?:to |that |about )(?P<what>.+) in (?P<d>{DURATION})",
    rf"in (?P<d>{DURATION}) remind me (?:to |that |about )(?P<what>.+)",
)]
_CANCEL = re.compile(r"(?:please )?(?:cancel|stop|delete|remove|clear|turn off)(?: all)? (?:the |my |all )?(?:timers?|reminders?)"
                     r"(?: please)?")
_PRONOUNS = {"my": "your", "me": "you", "i": "you", "myself": "yourself", "mine": "yours", "am": "are"}


@dataclass(frozen=True)
class StartTimer:
    seconds: float
    what: str = ""  # a reminder's subject ("call Sam"); empty for a plain timer
    requested_t: float = field(default_factory=time.monotonic)  # the delay counts from the request

    @property
    def announcement(self) -> str:
        if self.what:
            return f"Here's your reminder: {self.what}."
        return f"Your {say_duration(self.seconds, adjective=True)} timer is done."


@dataclass(frozen=True)
class CancelTimers:
    pass


def duration_s(said: str) -> float:
    total = 0.0
    for amount, unit, half in _PIECE.findall(said):
        value = 0.5 if amount.startswith("half") else 1.0 if amount in ("a", "an") else float(amount)
        total += (value + (0.5 if half else 0.0)) * _UNIT_S[unit]
    return total


def say_duration(seconds: float, adjective: bool = False) -> str:
    """600 -> 'ten minutes' ('ten minute' as an adjective), 90 -> 'one minute and thirty seconds'."""
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    for value, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")):
        if value:
            parts.append(f"{say_value(value)} {unit}{'' if value == 1 or adjective else 's'}")
    return " and ".join(parts) if parts else "zero seconds"


def _about_you(what: str) -> str:
    return " ".join(_PRONOUNS.get(word, word) for word in what.split())


def parse_set(said: str, _context: ToolContext | None = None) -> dict[str, Any] | None:
    for form in _SET:
        match = form.fullmatch(said)
        if match:
            seconds = duration_s(match["d"])
            what = match.groupdict().get("what") or ""
            return {"seconds": seconds, "reminder": _about_you(what)} if seconds > 0 else None
    return None


def parse_cancel(said: str, _context: ToolContext | None = None) -> dict[str, Any] | None:
    return {} if _CANCEL.fullmatch(said) else None


def set_timer(seconds: Annotated[float, "how long from now, in seconds"],
              reminder: Annotated[str, "what to remind the user of; empty for a plain timer"] = "") -> ToolResult:
    """Start a timer (or a reminder) that speaks up in this conversation when it is due."""
    if not 0 < seconds <= MAX_TIMER_S:
        return ToolResult("I can set timers from one second up to a day.")
    said = say_duration(seconds)
    if reminder:
        return ToolResult(f"Okay, I'll remind you in {said}.", StartTimer(seconds, reminder))
    return ToolResult(f"Okay, a timer for {said}, starting now.", StartTimer(seconds))


def cancel_timers() -> ToolResult:
    """Cancel every timer and reminder of this conversation."""
    return ToolResult("Okay, I've cancelled your timers.", CancelTimers())


SET_TOOL: Tool = tool_from_function(set_timer, parse=parse_set)
CANCEL_TOOL: Tool = tool_from_function(cancel_timers, parse=parse_cancel)


class SessionTimers:
    """The pending timers of one session. `say` speaks as the assistant; `busy` is true while the user
    is speaking or a reply is running (a due timer then waits, at most `max_defer_s`, so it talks over
    no one). `close()` cancels everything."""

    def __init__(self, say: Callable[[str], None], busy: Callable[[], bool] = lambda: False, *,
                 max_timers: int = 10, max_defer_s: float = 30.0, retry_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._say, self._busy, self._clock = say, busy, clock
        self.max_timers, self.max_defer_s, self.retry_s = max_timers, max_defer_s, retry_s
        self._pending: dict[int, asyncio.TimerHandle] = {}
        self._next_id = 0
        self.fired = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def apply(self, effect: object) -> None:
        """An effect a tool returned, now that its reply was given."""
        if isinstance(effect, StartTimer):
            self.start(effect)
        elif isinstance(effect, CancelTimers):
            self.cancel_all()

    def start(self, timer: StartTimer) -> bool:
        if len(self._pending) >= self.max_timers:
            self._say(f"Sorry, I can only keep {say_value(self.max_timers)} timers at once.")
            return False
        self._next_id += 1
        due_t = timer.requested_t + timer.seconds
        self._schedule(self._next_id, timer, due_t, max(0.0, due_t - self._clock()))
        return True

    def _schedule(self, key: int, timer: StartTimer, due_t: float, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._pending[key] = loop.call_later(delay_s, self._fire, key, timer, due_t)

    def _fire(self, key: int, timer: StartTimer, due_t: float) -> None:
        if self._busy() and self._clock() < due_t + self.max_defer_s:
            return self._schedule(key, timer, due_t, self.retry_s)  # the user is speaking: right after
        del self._pending[key]
        self.fired += 1
        self._say(timer.announcement)

    def cancel_all(self) -> int:
        count = len(self._pending)
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        return count

    def close(self) -> None:
        self.cancel_all()
