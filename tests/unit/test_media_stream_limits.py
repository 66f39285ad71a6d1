"""Media-stream sockets under load and abuse: the session cap checked again at `start`, a socket with
no `start` closed after the start timeout, a bound on sockets waiting for `start`, and a fault
barrier that keeps a call up through hostile messages and internal errors, logging no content.
Real Sessions on scripted fake engines, fake sockets; no sleeps."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from aiohttp import WSCloseCode, WSMsgType, WebSocketError

from voice_pipeline.transports import media_stream
from voice_pipeline.transports.media_stream import MediaStreamHandler, media_stream_endpoint

from .test_telephony_transport import FakeWs, fake_server, settle, start_call, start_message

DEEP = "[" * 30_000 + "]" * 30_000  # within the size limit, past the interpreter's recursion limit


def errors(server) -> dict[str, float]:
    """The `errors` counter by code."""
    samples = server.metrics.errors.collect()[0].samples
    return {sample.labels["code"]: sample.value for sample in samples if sample.name.endswith("_total")}


@pytest.fixture
def sockets(monkeypatch) -> list[FakeWs]:
    """Every socket `media_stream_endpoint` opens is a FakeWs, listed here in order."""
    made: list[FakeWs] = []

    def make(**_options) -> FakeWs:
        made.append(FakeWs())
        return made[-1]

    monkeypatch.setattr(media_stream, "web", SimpleNamespace(WebSocketResponse=make))
    return made


async def test_the_session_cap_is_checked_again_when_start_arrives():
    server = fake_server(max_sessions=1)
    early = FakeWs()
    handler = MediaStreamHandler(server, early, "twilio")  # type: ignore[arg-type]
    task = asyncio.create_task(handler.run())  # connected while the server still had room
    ws, other, other_task, far_end = await start_call(server, "telnyx")  # takes the only session
    await settle(lambda: other.session is not None)
    early.push(start_message("twilio"))
    await asyncio.wait_for(task, 5)
    assert early.closed == (1013, b"server_busy")
    assert handler.session is None and list(server.sessions) == [other.session.session_id]
    assert errors(server) == {"server_busy": 1.0}
    far_end.stop()
    await asyncio.wait_for(other_task, 5)


async def test_a_full_server_still_refuses_at_connect(sockets):
    server = fake_server(max_sessions=0)
    ws = await asyncio.wait_for(media_stream_endpoint(server, None, "twilio", set()), 5)  # type: ignore[arg-type]
    assert ws.closed == (1013, b"server_busy") and errors(server) == {"server_busy": 1.0}


async def test_sockets_waiting_for_start_are_bounded_and_a_start_frees_a_place(sockets):
    server = fake_server()
    server.settings.telephony.max_pending_streams = 2
    calls: set[MediaStreamHandler] = set()

    def connect(provider: str) -> asyncio.Task:
        return asyncio.create_task(media_stream_endpoint(server, None, provider, calls))  # type: ignore[arg-type]

    waiting = [connect("twilio"), connect("telnyx")]
    await settle(lambda: len(calls) == 2)
    refused = await asyncio.wait_for(connect("twilio"), 5)
    assert refused.closed == (1013, b"too_many_pending") and len(calls) == 2
    sockets[0].push(start_message("twilio"))  # one call starts: a place is free again
    await settle(lambda: sum(call.pending for call in calls) == 1)
    waiting.append(connect("twilio"))
    await settle(lambda: len(calls) == 3)
    assert errors(server) == {"too_many_pending": 1.0}
    for ws in sockets:
        ws.inbox.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert calls == set() and server.sessions == {}


async def test_a_socket_that_sends_no_start_in_time_is_closed_and_counted():
    server = fake_server()
    server.settings.telephony.start_timeout_s = 0.0  # expires at the loop's next turn: nothing to wait for
    ws = FakeWs()
    handler = MediaStreamHandler(server, ws, "twilio")  # type: ignore[arg-type]
    ws.push({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    ws.push({"event": "mark", "streamSid": "S1", "mark": {"name": "m"}})  # anything but start keeps no socket open
    await asyncio.wait_for(handler.run(), 5)
    assert ws.closed == (1008, b"start_timeout")
    assert handler.session is None and server.sessions == {} and not handler.pending
    assert errors(server)["start_timeout"] == 1.0


async def test_the_start_timeout_ends_with_the_start():
    server = fake_server()
    server.settings.telephony.start_timeout_s = 0.0  # would expire at the next turn, after the queued start is read
    ws, handler, task, far_end = await start_call(server, "twilio")
    await settle(lambda: handler.session is not None)
    far_end.say()
    await ws.wait_for(lambda sent: any(m["event"] == "media" for m in sent))
    far_end.stop()
    await asyncio.wait_for(task, 5)
    assert ws.closed is None and "start_timeout" not in errors(server)


async def test_an_internal_error_is_counted_logged_by_type_only_and_the_call_goes_on(caplog):
    caplog.set_level(logging.INFO, "voice_pipeline.telephony")
    server = fake_server()
    ws, handler, task, far_end = await start_call(server, "twilio")
    await settle(lambda: handler.session is not None)
    receive = handler.call.receive

    def flaky(text):
        if "SECRET" in text:
            raise KeyError("SECRET")  # a bug met while handling one message
        return receive(text)

    handler.call.receive = flaky  # type: ignore[method-assign]
    ws.push({"event": "mark", "streamSid": "S1", "mark": {"name": "SECRET"}})
    far_end.say()
    await ws.wait_for(lambda sent: any(m["event"] == "media" for m in sent))
    far_end.stop()
    await asyncio.wait_for(task, 5)
    assert errors(server) == {"internal_error": 1.0}
    assert "KeyError" in caplog.text and "flaky" in caplog.text and "SECRET" not in caplog.text


async def test_hostile_messages_are_counted_by_code_not_logged_and_the_call_goes_on(caplog):
    caplog.set_level(logging.INFO, "voice_pipeline.telephony")
    server = fake_server()
    ws, handler, task, far_end = await start_call(server, "telnyx")
    media = '{"event": "media", "stream_id": "S1", "media": {"chunk": %s, "timestamp": %s, "payload": %s}}'
    for text in [
        media % ("Infinity", '"1"', '""'),
        media % ('"1"', "1e999", '""'),
        media % ("9" * 5000, '"1"', '""'),
        media % ('"1"', '"1"', '"PIN7391\\u00fc"'),  # non-ASCII base64
        media % ('"-1"', '"1"', '""'),
        DEEP,
        '{"event": "dtmf", "stream_id": "S1", "dtmf": {"digit": "7391"}}',
    ]:
        ws.push(text)
    ws.push_binary(b"\x00\x01")
    too_big = WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, "frame too big")  # what aiohttp yields before it closes
    ws.inbox.put_nowait(SimpleNamespace(type=WSMsgType.ERROR, data=too_big))
    far_end.say()
    await ws.wait_for(lambda sent: any(m["event"] == "media" for m in sent))
    far_end.stop()
    await asyncio.wait_for(task, 5)
    assert errors(server) == {"invalid_json": 4.0, "invalid_event": 3.0, "binary_frame": 1.0, "message_too_large": 1.0}
    assert "7391" not in caplog.text and "PIN" not in caplog.text
    assert handler.session.conversation.history  # the turn after them was answered


async def test_a_flood_of_bad_messages_is_all_counted_but_logged_only_at_first(caplog):
    caplog.set_level(logging.INFO, "voice_pipeline.telephony")
    server = fake_server()
    ws, handler, task, far_end = await start_call(server, "twilio")
    for _ in range(50):
        ws.push("{not json")
    far_end.stop()
    await asyncio.wait_for(task, 5)
    assert errors(server) == {"invalid_json": 50.0}
    logged = [record for record in caplog.records if "invalid_json" in record.getMessage()]
    assert 0 < len(logged) <= 25  # a few lines, not one per message
