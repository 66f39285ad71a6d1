"""Phone transports on a real Session with scripted fake engines: media-stream calls end to end
(Twilio and Telnyx shapes), barge-in -> clear -> history cut at what marks say was heard, the
SIP line's flush and heard position, DTMF and escalation. No sockets, no sleeps."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
from aiohttp import WSMsgType

from voice_pipeline.app.host import SessionHost
from voice_pipeline.metrics import PipelineMetrics
from voice_pipeline.protocol.events import EventKind, ServerEvent
from voice_pipeline.telephony.mulaw import float_to_mulaw
from voice_pipeline.transports.media_stream import MediaStreamHandler
from voice_pipeline.transports.phone import on_dtmf
from voice_pipeline.transports.sip import SipCallHandler, SipLine
from voice_pipeline.transports.telephony import TelephonyService

from .fakes import FakeLlm, fake_engines, make_settings

ID_KEY = {"twilio": "streamSid", "telnyx": "stream_id"}


class FakeWs:
    """The provider's side of the WebSocket: scripted messages in, everything we send recorded."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict] = []
        self.closed: tuple[int, bytes] | None = None  # (close code, reason) once we close it
        self._changed = asyncio.Condition()

    def __aiter__(self):
        return self

    async def __anext__(self):
        message = await self.inbox.get()
        if message is None:
            raise StopAsyncIteration
        return message

    def push(self, message: dict | str) -> None:
        data = message if isinstance(message, str) else json.dumps(message)
        self.inbox.put_nowait(SimpleNamespace(type=WSMsgType.TEXT, data=data))

    def push_binary(self, data: bytes) -> None:
        self.inbox.put_nowait(SimpleNamespace(type=WSMsgType.BINARY, data=data))

    async def prepare(self, request) -> None:
        pass

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closed = (code, message)
        self.inbox.put_nowait(None)  # a closed socket yields no more messages
        return True

    async def send_str(self, text: str) -> None:
        async with self._changed:
            self.sent.append(json.loads(text))
            self._changed.notify_all()

    async def wait_for(self, predicate, timeout_s: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.sent)), timeout_s)

    def of(self, event: str) -> list[dict]:
        return [m for m in self.sent if m["event"] == event]


def fake_server(llm=None, transfer_uri: str = "", max_sessions: int = 8):
    settings = make_settings()
    settings.telephony.transfer_uri = transfer_uri
    settings.server.max_sessions = max_sessions
    return SessionHost(settings, PipelineMetrics(), fake_engines(llm=llm))


def start_message(provider: str) -> dict:
    if provider == "twilio":
        return {"event": "start", "streamSid": "S1", "start": {
            "streamSid": "S1", "callSid": "C1", "tracks": ["inbound"], "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    return {"event": "start", "stream_id": "S1", "start": {
        "call_control_id": "C1", "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}}


class FarEnd:
    """A caller's phone on a media stream: 20 ms frames of scripted loud/quiet audio."""

    def __init__(self, ws: FakeWs, provider: str) -> None:
        self.ws, self.provider, self.chunk = ws, provider, 0

    def send(self, ms: int, level: float) -> None:
        for _ in range(ms // 20):
            self.chunk += 1
            payload = base64.b64encode(float_to_mulaw(np.full(160, level, dtype=np.float32))).decode()
            self.ws.push({"event": "media", ID_KEY[self.provider]: "S1", "media": {
                "track": "inbound", "chunk": str(self.chunk), "timestamp": str(20 * self.chunk), "payload": payload}})

    def say(self, ms: int = 640) -> None:
        self.send(200, 0.0)
        self.send(ms, 0.3)
        self.send(600, 0.0)

    def echo_mark(self, name: str) -> None:
        self.ws.push({"event": "mark", ID_KEY[self.provider]: "S1", "mark": {"name": name}})

    def stop(self) -> None:
        self.ws.push({"event": "stop", ID_KEY[self.provider]: "S1", "stop": {}})


async def settle(condition, max_steps: int = 1000) -> None:
    """Let the event loop run (no clock involved) until `condition()` holds."""
    for _ in range(max_steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def start_call(server, provider: str):
    ws = FakeWs()
    handler = MediaStreamHandler(server, ws, provider)  # type: ignore[arg-type]
    task = asyncio.create_task(handler.run())
    ws.push({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    ws.push(start_message(provider))
    return ws, handler, task, FarEnd(ws, provider)


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_a_spoken_question_gets_media_frames_and_marks_then_the_call_ends(provider):
    server = fake_server()
    ws, handler, task, far_end = await start_call(server, provider)
    far_end.say()
    await ws.wait_for(lambda sent: any(m["event"] == "mark" for m in sent) and len(sent) > 20)
    session = handler.session
    await settle(lambda: [m.role for m in session.conversation.history] == ["user", "assistant"])
    await ws.wait_for(lambda sent: sent[-1]["event"] == "mark")
    far_end.stop()
    await asyncio.wait_for(task, 5)
    media = ws.of("media")
    frames = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert frames and all(len(frame) == 160 for frame in frames)  # whole 20 ms frames at 8 kHz
    assert ws.sent[-1]["event"] == "mark"  # the reply ends with a mark after its last audio
    assert not ws.of("clear")
    assert server.sessions == {}  # the call's session is gone with the call
    assert server.metrics.turns.collect()[0].samples  # the turn is counted as for the browser


async def test_barge_in_sends_clear_and_keeps_what_the_marks_say_was_heard():
    server = fake_server(llm=FakeLlm(hold_after=5))  # says "Paris is the capital," then waits
    server.settings.vad.barge_in_confirm_ms = 0  # any speech over the reply interrupts it at once
    ws, handler, task, far_end = await start_call(server, "twilio")
    far_end.say()
    await ws.wait_for(lambda sent: len([m for m in sent if m["event"] == "mark"]) >= 1)
    first_mark = ws.of("mark")[0]["mark"]["name"]  # placed after 200 ms of reply: "Paris is"
    far_end.echo_mark(first_mark)
    far_end.send(400, 0.3)  # the caller talks over the reply
    await ws.wait_for(lambda sent: any(m["event"] == "clear" for m in sent))
    clear_at = next(i for i, m in enumerate(ws.sent) if m["event"] == "clear")
    await settle(lambda: handler.session.conversation.history[-1].role == "assistant")  # the cancelled reply finished
    far_end.stop()
    await asyncio.wait_for(task, 5)
    assert ws.sent[clear_at] == {"event": "clear", "streamSid": "S1"}
    assert not any(m["event"] == "media" for m in ws.sent[clear_at + 1:])  # nothing of it after clear
    assert handler.session.conversation.history[-1].content == "Paris is"  # 200 ms heard, 100 ms per word
    assert server.metrics.interruptions._value.get() == 1


async def test_malformed_messages_are_counted_and_the_call_goes_on():
    server = fake_server()
    ws, handler, task, far_end = await start_call(server, "twilio")
    ws.push("{not json")
    ws.push({"event": "media", "streamSid": "S1", "media": {"payload": "***"}})
    far_end.say()
    await ws.wait_for(lambda sent: any(m["event"] == "media" for m in sent))
    far_end.stop()
    await asyncio.wait_for(task, 5)
    errors = {s.labels["code"] for s in server.metrics.errors.collect()[0].samples if s.name.endswith("_total")}
    assert len(errors) >= 1


async def test_a_full_server_refuses_no_session_is_made_before_start():
    server = fake_server()
    ws = FakeWs()
    handler = MediaStreamHandler(server, ws, "twilio")  # type: ignore[arg-type]
    task = asyncio.create_task(handler.run())
    ws.push({"event": "media", "streamSid": "S1", "media": {"payload": "", "track": "inbound"}})
    ws.inbox.put_nowait(None)  # the socket closes before any start
    await asyncio.wait_for(task, 5)
    assert handler.session is None and server.sessions == {}


class FakeMedia:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.sent_audio_ms = 0.0
        self.flushes = 0

    @property
    def queued_audio_ms(self) -> float:
        return 20.0 * len(self.frames)

    def send_audio(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    def flush_audio(self) -> int:
        self.flushes += 1
        dropped, self.frames = len(self.frames), []
        return dropped

    def play(self, n_frames: int) -> None:
        del self.frames[:n_frames]
        self.sent_audio_ms += 20.0 * n_frames


async def test_sip_line_frames_reply_audio_and_a_barge_in_flushes_and_reports_what_was_sent():
    media = FakeMedia()
    media.sent_audio_ms = 1000.0  # an earlier reply
    line = SipLine(SimpleNamespace(media=media), lead_ms=40.0)  # type: ignore[arg-type]
    await line.reply_started("r1")
    await line.reply_audio(np.full(8000 // 2 + 50, 0.2, dtype=np.float32))  # 0.5 s and a bit
    assert len(media.frames) == 25 and all(len(f) == 160 for f in media.frames)
    media.play(10)  # 200 ms went out
    assert await line.reply_cleared("r1") == pytest.approx(160.0)  # sent less the sender's lead
    assert media.flushes == 1 and media.frames == []
    await line.reply_ended()
    assert media.frames == []  # the remainder was dropped by the clear
    assert await line.reply_cleared("r2") == 0.0  # a reply none of which was sent


async def test_sip_escalation_refers_to_the_transfer_uri_and_dtmf_zero_asks_for_it(caplog):
    transfers: list[str] = []
    call = SimpleNamespace(call_id="c1", media=FakeMedia(), transfer=transfers.append)
    with_uri = SipCallHandler(fake_server(transfer_uri="sip:human@pbx"), call)  # type: ignore[arg-type]
    without = SipCallHandler(fake_server(), call)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, "voice_pipeline.telephony")
    on_dtmf(with_uri, "7", "0", log_digits=False)
    assert transfers == []
    on_dtmf(with_uri, "0", "0", log_digits=False)
    assert transfers == ["sip:human@pbx"]
    assert without.escalate("fallback cascade") is False and transfers == ["sip:human@pbx"]
    assert "dtmf 7" not in caplog.text and "(digit hidden)" in caplog.text


async def test_media_stream_escalation_is_refused_and_the_service_finds_calls_by_session():
    server = fake_server()
    service = TelephonyService(server)  # type: ignore[arg-type]
    ws, handler, task, far_end = await start_call(server, "telnyx")
    service.media_calls.add(handler)
    await settle(lambda: handler.session is not None)
    assert service.escalate(handler.session.session_id, "test") is False
    assert service.escalate("no-such-session", "test") is False
    far_end.stop()
    await asyncio.wait_for(task, 5)


async def test_turn_metrics_are_logged_without_what_was_said(caplog):
    from voice_pipeline.transports.phone import log_turn_metrics

    caplog.set_level(logging.INFO, "voice_pipeline.telephony")
    event = ServerEvent(EventKind.TURN_METRICS, "sip-1", turn_id="t1", data={
        "voice_to_voice_ms": 812.5, "stages_ms": {"stt": 300.0}, "llm_tokens": 9, "audio_out_ms": 1200.0})
    log_turn_metrics("sip-1", event)
    assert "voice_to_voice_ms=812.5" in caplog.text and "stt=300.0" in caplog.text
