"""The session's outputs: small typed events with monotonic timestamps, and reply audio.

`EventKind` values are the wire names of docs/protocol.md; transports that speak another
protocol (telephony) map the kinds they need and ignore the rest.
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


class EventKind(enum.StrEnum):
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    SPEECH_STARTED = "input_audio_buffer.speech_started"
    SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
    INPUT_COMMITTED = "input_audio_buffer.committed"
    TRANSCRIPT_PARTIAL = "conversation.item.input_audio_transcription.partial"
    TRANSCRIPT_FINAL = "conversation.item.input_audio_transcription.completed"
    RESPONSE_CREATED = "response.created"
    RESPONSE_TEXT_DELTA = "response.text.delta"
    RESPONSE_TEXT_DONE = "response.text.done"
    OUTPUT_AUDIO_STARTED = "output_audio_buffer.started"
    OUTPUT_AUDIO_STOPPED = "output_audio_buffer.stopped"
    OUTPUT_AUDIO_CLEARED = "output_audio_buffer.cleared"
    OUTPUT_AUDIO_PAUSED = "output_audio_buffer.paused"  # speech over the reply: hold playback, keep the buffer
    OUTPUT_AUDIO_RESUMED = "output_audio_buffer.resumed"  # it was a backchannel: play on from where it paused
    RESPONSE_DONE = "response.done"
    TURN_METRICS = "turn.metrics"
    RESET_DONE = "conversation.reset.done"
    ESCALATION = "conversation.escalation"
    FUNCTION_CALL = "response.function_call_arguments.done"  # the model calls a client tool
    ITEM_ADDED = "conversation.item.added"  # a client item (text, function output) was accepted
    INPUT_CLEARED = "input_audio_buffer.cleared"
    ITEM_TRUNCATED = "conversation.item.truncated"
    ERROR = "error"


_event_ids = itertools.count(1)


def now() -> float:
    """The one clock every latency figure is computed from (seconds, monotonic)."""
    return time.monotonic()


@dataclass(frozen=True)
class ServerEvent:
    kind: EventKind
    session_id: str
    t: float = field(default_factory=now)
    turn_id: str | None = None
    response_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: f"e{next(_event_ids)}")


@dataclass(frozen=True)
class AudioChunk:
    """Reply audio for the client: mono float32 at the session's output rate."""

    response_id: str
    samples: np.ndarray
    sample_rate_hz: int

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate_hz
