"""A scripted provider far end (20 ms frames, echoes marks when played, honours clear) drives a call."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.bridge import CallEnded, CallerAudio, CallerDtmf, CallStarted, MediaStreamCall
from voice_pipeline.telephony.media_streams import codec_for
from voice_pipeline.telephony.mulaw import float_to_mulaw

TTS_RATE_HZ = 22_050
ID_KEY = {"twilio": "streamSid", "telnyx": "stream_id"}


class ScriptedFarEnd:
    """Plays what it is sent at real time (driven clock) and echoes marks as Twilio and Telnyx do."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.queue: list[tuple[str, object]] = []  # ("audio", ms) or ("mark", name)
        self.played_ms = 0.0

    def deliver(self, messages: list[str]) -> None:
        for text in messages:
            message = json.loads(text)
            if message["event"] == "media":
                self.queue.append(("audio", len(base64.b64decode(message["media"]["payload"])) / 8.0))
            elif message["event"] == "mark":
                self.queue.append(("mark", message["mark"]["name"]))

    def play(self, duration_ms: float) -> list[str]:
        """Play up to `duration_ms` of queued audio; return the mark echoes that became due."""
        echoes: list[str] = []
        budget = duration_ms
        while self.queue:
            kind, value = self.queue[0]
            if kind == "mark":
                echoes.append(self._echo(str(value)))
                self.queue.pop(0)
            elif budget >= float(value):  # type: ignore[arg-type]
                budget -= float(value)  # type: ignore[arg-type]
                self.played_ms += float(value)  # type: ignore[arg-type]
                self.queue.pop(0)
            else:
                break
        return echoes

    def clear(self) -> list[str]:
        """Drop queued audio; pending marks are echoed at once."""
        echoes = [self._echo(str(value)) for kind, value in self.queue if kind == "mark"]
        self.queue.clear()
        return echoes

    def _echo(self, name: str) -> str:
        return json.dumps({"event": "mark", ID_KEY[self.provider]: "S1", "mark": {"name": name}})


def _start(provider: str) -> str:
    if provider == "twilio":
        return json.dumps({"event": "start", "streamSid": "S1", "start": {
            "streamSid": "S1", "callSid": "C1", "tracks": ["inbound"], "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
    return json.dumps({"event": "start", "stream_id": "S1", "start": {
        "call_control_id": "C1", "from": "+15550001111",
        "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}})


def _media(provider: str, chunk: int, audio_mulaw: bytes, track: str = "inbound") -> str:
    return json.dumps({"event": "media", ID_KEY[provider]: "S1", "media": {
        "track": track, "chunk": str(chunk), "timestamp": str(20 * chunk),
        "payload": base64.b64encode(audio_mulaw).decode()}})


def _caller_speech(seconds: float) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return float_to_mulaw((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
def test_a_whole_call_with_a_barge_in(provider: str) -> None:
    call = MediaStreamCall(codec_for(provider), tts_rate_hz=TTS_RATE_HZ, mark_every_ms=200.0)
    far_end = ScriptedFarEnd(provider)
    assert call.receive(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == []
    [started] = call.receive(_start(provider))
    assert isinstance(started, CallStarted) and (started.provider, started.call_id) == (provider, "C1")

    speech = _caller_speech(1.0)
    heard_16k = []
    for chunk in range(50):  # 20 ms frames, as providers send them
        [event] = call.receive(_media(provider, chunk, speech[chunk * 160 : (chunk + 1) * 160]))
        assert isinstance(event, CallerAudio)
        heard_16k.append(event.audio)
    assert 14_000 < sum(len(piece) for piece in heard_16k) <= 16_000  # libsoxr holds back tens of ms

    call.start_reply("t1")
    reply = (0.2 * np.ones(TTS_RATE_HZ, dtype=np.float32))  # one second of "speech"
    far_end.deliver(call.reply_audio(reply[: TTS_RATE_HZ // 2]) + call.reply_audio(reply[TTS_RATE_HZ // 2 :]))
    far_end.deliver(call.end_reply())
    assert call.marks.position.sent_ms == 1000.0

    for echo in far_end.play(350.0):  # the caller hears 350 ms, then talks over the reply
        assert call.receive(echo) == []
    messages, position = call.barge_in()
    assert json.loads(messages[0])["event"] == "clear"
    for echo in far_end.clear():
        call.receive(echo)  # the flushed marks must not count as heard
    assert position.heard_ms == 200.0  # the last mark before 350 ms
    assert position.heard_ms <= far_end.played_ms < position.heard_ms + call.mark_every_ms
    assert call.marks.position.heard_ms == 200.0

    assert call.receive(json.dumps({"event": "dtmf", ID_KEY[provider]: "S1", "dtmf": {"digit": "#"}})) == [
        CallerDtmf("#")]
    assert call.receive(json.dumps({"event": "stop", ID_KEY[provider]: "S1", "stop": {}})) == [CallEnded("stop")]


def test_outbound_track_echoes_are_ignored() -> None:
    call = MediaStreamCall(codec_for("telnyx"), tts_rate_hz=TTS_RATE_HZ)
    call.receive(_start("telnyx"))
    assert call.receive(_media("telnyx", 1, b"\xff" * 160, track="outbound")) == []


def test_messages_before_start_are_protocol_errors() -> None:
    call = MediaStreamCall(codec_for("twilio"), tts_rate_hz=TTS_RATE_HZ)
    with pytest.raises(ProtocolError) as caught:
        call.receive(_media("twilio", 1, b"\xff" * 160))
    assert caught.value.code == "stream_not_started"
    with pytest.raises(ProtocolError):
        call.reply_audio(np.zeros(100, dtype=np.float32))


def test_marks_are_placed_every_interval_and_at_the_end() -> None:
    call = MediaStreamCall(codec_for("twilio"), tts_rate_hz=8000, mark_every_ms=100.0)
    call.receive(_start("twilio"))
    call.start_reply("t1")
    events = [json.loads(m)["event"] for m in call.reply_audio(np.zeros(8000 * 25 // 100, dtype=np.float32))]
    events += [json.loads(m)["event"] for m in call.end_reply()]
    # 250 ms = 12.5 frames: 5 frames, mark, 5 frames, mark, 2 frames + padded last frame, closing mark
    assert events == ["media"] * 5 + ["mark"] + ["media"] * 5 + ["mark"] + ["media"] * 3 + ["mark"]
