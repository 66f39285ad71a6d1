"""One media-stream phone call as a pure state object: provider messages in, pipeline events out;
reply audio in, provider messages out. The same for every provider; only the codec differs.

The WebSocket handler feeds `receive()` with each text frame and sends whatever the reply methods
return; the session sees `CallerAudio` at 16 kHz and calls `reply_audio()` with TTS audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping

import numpy as np

from voice_pipeline.audio import PIPELINE_RATE_HZ
from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.marks import MarkTracker, PlayedPosition
from voice_pipeline.telephony.media_streams import (
    MediaStreamCodec,
    StreamConnected,
    StreamDtmf,
    StreamFailed,
    StreamMark,
    StreamMedia,
    StreamStarted,
    StreamStopped,
)
from voice_pipeline.telephony.phone_audio import PhoneAudioIn, PhoneAudioOut, mulaw_duration_ms


@dataclass(frozen=True)
class CallStarted:
    provider: str
    call_id: str
    stream_id: str
    caller: str | None
    custom_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class CallerAudio:
    audio: np.ndarray  # float32 mono at the pipeline rate
    timestamp_ms: int  # provider's media timestamp of this piece


@dataclass(frozen=True)
class CallerDtmf:
    digit: str


@dataclass(frozen=True)
class CallEnded:
    reason: str  # "stop" (the provider ended the stream) or "error: <detail>"


CallEvent = CallStarted | CallerAudio | CallerDtmf | CallEnded


class MediaStreamCall:
    """Per-call state: resamplers, 20 ms framing, and the marks that tell what the caller heard."""

    def __init__(self, codec: MediaStreamCodec, *, tts_rate_hz: int, pipeline_rate_hz: int = PIPELINE_RATE_HZ,
                 mark_every_ms: float = 200.0) -> None:
        self.codec = codec
        self.mark_every_ms = mark_every_ms
        self.stream_id: str | None = None
        self.marks = MarkTracker()
        self._audio_in = PhoneAudioIn(pipeline_rate_hz)
        self._audio_out = PhoneAudioOut(tts_rate_hz)
        self._since_mark_ms = 0.0

    def receive(self, text: str | bytes) -> list[CallEvent]:
        """Decode one provider message; raises ProtocolError for a malformed or out-of-order one."""
        event = self.codec.decode(text)
        if isinstance(event, StreamConnected):
            return []
        if isinstance(event, StreamStarted):
            if self.stream_id is not None:  # a second start would switch the stream under the call
                raise ProtocolError("stream_already_started", "a second 'start' on one stream", "start")
            self.stream_id = event.stream_id
            return [CallStarted(self.codec.provider, event.call_id, event.stream_id, event.caller,
                                event.custom_parameters)]
        if self.stream_id is None:
            raise ProtocolError("stream_not_started", f"'{type(event).__name__}' before 'start'")
        if isinstance(event, StreamMedia):
            if event.track != "inbound":
                return []  # our own audio echoed on a both-tracks stream
            return [CallerAudio(self._audio_in.decode(event.audio_mulaw), event.timestamp_ms)]
        if isinstance(event, StreamMark):
            self.marks.mark_played(event.name)
            return []
        if isinstance(event, StreamDtmf):
            return [CallerDtmf(event.digit)]
        if isinstance(event, StreamStopped):
            return [CallEnded("stop")]
        assert isinstance(event, StreamFailed)
        return [CallEnded(f"error: {event.code} {event.detail}".strip())]

    # --- the reply ------------------------------------------------------------------------

    def start_reply(self, reply_id: str) -> None:
        self._audio_out.reset()
        self.marks.start_reply(reply_id)
        self._since_mark_ms = 0.0

    def reply_audio(self, audio: np.ndarray) -> list[str]:
        """TTS audio (float32 at `tts_rate_hz`) -> `media` messages, with a `mark` every `mark_every_ms`."""
        return self._send_frames(self._audio_out.encode(audio), final=False)

    def end_reply(self) -> list[str]:
        """The reply's last audio (padded to a whole frame) and a closing mark."""
        return self._send_frames(self._audio_out.finish(), final=True)

    def barge_in(self) -> tuple[list[str], PlayedPosition]:
        """The caller spoke over the reply: `clear` the provider's buffer; returns what was heard."""
        self._audio_out.reset()
        position = self.marks.clear()
        return [self.codec.encode_clear(self._require_stream())], position

    def _send_frames(self, frames: list[bytes], *, final: bool) -> list[str]:
        stream_id = self._require_stream()
        messages: list[str] = []
        for frame in frames:
            messages.append(self.codec.encode_media(stream_id, frame))
            duration_ms = mulaw_duration_ms(frame)
            self.marks.audio_sent(duration_ms)
            self._since_mark_ms += duration_ms
            if self._since_mark_ms >= self.mark_every_ms:
                messages.append(self.codec.encode_mark(stream_id, self.marks.place_mark()))
                self._since_mark_ms = 0.0
        if final and self._since_mark_ms > 0:
            messages.append(self.codec.encode_mark(stream_id, self.marks.place_mark()))
            self._since_mark_ms = 0.0
        return messages

    def _require_stream(self) -> str:
        if self.stream_id is None:
            raise ProtocolError("stream_not_started", "no reply can be sent before the stream's 'start'")
        return self.stream_id
