"""Speculative turns: a reply prepared during the endpoint wait, held back until the turn ends.

When a pause begins, the session starts the whole reply (final STT pass, LLM, first TTS audio) in
a task whose events and audio are *held*: events are buffered here instead of being sent, and the
reply's audio waits in the outbox. If the user speaks again the speculation is discarded (task
cancelled, audio and events dropped, CPU time counted as wasted); if the endpoint confirms the
turn, the held events go out in order and the audio is released at once. Nothing is ever spoken
over a user who is only pausing.

The task's context carries its Speculation (a ContextVar), so code deep in the reply path emits
events the same way whether or not it runs speculatively.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from dataclasses import dataclass, field

from .events import ServerEvent

_current: contextvars.ContextVar["Speculation | None"] = contextvars.ContextVar("speculation", default=None)


@dataclass
class Speculation:
    turn_id: str
    history_len: int  # conversation length before the speculative turn, to undo a discarded one
    held_events: list[ServerEvent] = field(default_factory=list)
    response_ids: list[str] = field(default_factory=list)
    task: asyncio.Task | None = None
    committed: bool = False
    discarded: bool = False
    cpu_start_s: float = field(default_factory=time.process_time)
    transcript: str | None = None  # the provisional transcript, once known

    @property
    def held(self) -> bool:
        return not self.committed and not self.discarded

    def wasted_cpu_s(self) -> float:
        """Process CPU time since the speculation began (all threads: an estimate of its cost)."""
        return max(0.0, time.process_time() - self.cpu_start_s)


def current() -> Speculation | None:
    """The speculation the running task belongs to, if it is still held or was discarded."""
    spec = _current.get()
    return spec if spec is not None and not spec.committed else None


def run_as(spec: Speculation) -> None:
    """Mark the running task (and the tasks it creates from now on) as part of `spec`."""
    _current.set(spec)


_WORDS = re.compile(r"[a-z0-9']+")


def transcripts_match(provisional: str, final: str) -> bool:
    """The same words in the same order, ignoring case, punctuation and spacing.

    A speculative reply answered `provisional`; it may be sent for `final` only if the user said
    the same thing. Any difference in words (even one) means the prepared reply is redone.
    """
    return _WORDS.findall(provisional.lower()) == _WORDS.findall(final.lower())
