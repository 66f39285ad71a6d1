"""What both phone transports share: the session config of a call, and the session's events seen from a phone line.

Each call's Session comes from the SessionHost (session_host.py), like the browser's.

A phone shows no text. Of the session's events a line needs the reply audio (start, frames, end),
`output_audio_buffer.cleared` (barge-in: silence the far end at once and learn what the caller
heard), `response.done` (then the sink reports the playback to the session, which keeps only the
words heard in its history), the turn metrics
(logged without transcripts; the session already counts them in /metrics) and errors (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from voice_pipeline.audio import PIPELINE_RATE_HZ
from voice_pipeline.protocol.events import AudioChunk, EventKind, ServerEvent
from voice_pipeline.session.session import Session
from voice_pipeline.telephony.phone_audio import PHONE_RATE_HZ

log = logging.getLogger("voice_pipeline.telephony")

# Callers speak 8 kHz audio that the transports bring to 16 kHz; the session renders replies at
# 8 kHz, so the lines only cut 20 ms frames. Nobody sees partial transcripts on a phone: skip them.
PHONE_SESSION_CONFIG = {
    "input_audio_format": {"encoding": "pcm16", "sample_rate": PIPELINE_RATE_HZ},
    "output_audio_format": {"encoding": "pcm16", "sample_rate": PHONE_RATE_HZ},
    "transcription": {"partials": False},
}


class PhoneLine(Protocol):
    """A transport's side of a call: plays reply audio (8 kHz float32) to the caller."""

    async def reply_started(self, response_id: str) -> None: ...

    async def reply_audio(self, samples: np.ndarray) -> None: ...

    async def reply_ended(self) -> None: ...

    async def reply_cleared(self, response_id: str) -> float:
        """Barge-in: drop the far end's unplayed audio now; returns the ms of the reply heard."""
        ...


class PhoneSink:
    """The session's Sink for a phone call: audio to the line; barge-in cuts the history to what was heard."""

    def __init__(self, line: PhoneLine, session: Session, escalate: Callable[[str], object] | None = None) -> None:
        self.line, self.session, self.label = line, session, session.session_id
        self._escalate = escalate  # the cascade's escalation event becomes a transfer where possible
        self._heard_ms: dict[str, float] = {}  # cleared replies -> heard, applied at their response.done

    async def send_audio(self, chunk: AudioChunk) -> None:
        await self.line.reply_audio(chunk.samples)

    async def send_event(self, event: ServerEvent) -> None:
        match event.kind:
            case EventKind.OUTPUT_AUDIO_STARTED:
                await self.line.reply_started(event.response_id or "")
            case EventKind.OUTPUT_AUDIO_STOPPED:
                await self.line.reply_ended()
            case EventKind.OUTPUT_AUDIO_CLEARED:
                self._heard_ms[event.response_id or ""] = await self.line.reply_cleared(event.response_id or "")
            case EventKind.RESPONSE_DONE:
                self._report_playback(event.response_id or "")
            case EventKind.TURN_METRICS:
                log_turn_metrics(self.label, event)
            case EventKind.ESCALATION:
                if self._escalate is not None:
                    self._escalate(str(event.data.get("reason", "escalation")))
            case EventKind.ERROR:
                log.info("call %s: session error %s", self.label, event.data.get("error", {}).get("code"))

    def _report_playback(self, response_id: str) -> None:
        """A cleared reply has finished: tell the session how much of it the caller heard."""
        heard_ms = self._heard_ms.pop(response_id, None)
        if heard_ms is not None:
            self.session.playback_finished(response_id, heard_ms, interrupted=True)


class PhoneCall(Protocol):
    label: str

    def escalate(self, reason: str) -> bool:
        """Hand the caller to a person; False where this transport cannot."""
        ...


def on_dtmf(call: PhoneCall, digit: str, transfer_digit: str, log_digits: bool) -> None:
    """A key press: the transfer digit asks for a person; others are only logged (a PIN is private)."""
    log.info("call %s: dtmf %s", call.label, digit if log_digits else "(digit hidden)")
    if transfer_digit and digit == transfer_digit:
        call.escalate(f"caller pressed {digit}")


def log_turn_metrics(label: str, event: ServerEvent) -> None:
    """One line per turn, figures only (never what was said)."""
    data = event.data
    stages = " ".join(f"{name}={ms}" for name, ms in data.get("stages_ms", {}).items())
    log.info("call %s turn %s: voice_to_voice_ms=%s audio_out_ms=%s llm_tokens=%s %s", label, event.turn_id,
             data.get("voice_to_voice_ms"), data.get("audio_out_ms"), data.get("llm_tokens"), stages)
