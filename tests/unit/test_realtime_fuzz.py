"""Fuzzing /v1/realtime's decoder and the server's per-message fault barrier.

Every text frame, however malformed, either decodes into a command or raises a ProtocolError with
a code; through the server's message handler it becomes an `error` event at worst, and the
session goes on. The named cases are the ones that dropped sockets or lost data before.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from types import SimpleNamespace

import pytest
from aiohttp import WSMsgType

from voice_pipeline.app.server import PipelineServer
from voice_pipeline.errors import ProtocolError
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.protocol.json_codec import AppendAudio, decode_text

from .fakes import fake_engines, make_settings
from .test_session import Harness

HUGE_INT = "9" * 5000  # past Python's 4,300-digit int parsing limit: ValueError, not JSONDecodeError
VALID = [
    {"type": "session.start", "session": {"instructions": "Be brief."}},
    {"type": "session.update", "session": {"turn_detection": {"type": "server_vad", "threshold": 0.5,
                                                              "silence_duration_ms": 300}}},
    {"type": "input_audio_buffer.append", "audio": "AAAA"},
    {"type": "input_audio_buffer.commit"},
    {"type": "conversation.item.create",
     "item": {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}},
    {"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": 120},
    {"type": "response.cancel"},
    {"type": "conversation.reset"},
]
NASTY_VALUES = [None, True, -1, 0, 2**63, -(2**63), 1e308, -0.0, "", "é" * 50, "\u0000", "\ud800", [], {},
                [[[]]], {"a": {"b": {}}}, "AAAA", "@@@@", 3.5, "r1", list(range(50))]
NASTY_LITERALS = [HUGE_INT, "1" + "0" * 400, "1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1e-999",
                  "[" * 5000 + "]" * 5000, '"\\ud800"', "0.1e1000000"]


def _named_cases() -> list[str]:
    return [
        '{"type": ' + HUGE_INT + '}',
        '{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": ' + HUGE_INT + '}',
        '{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": 1' + "0" * 400 + '}',
        '{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": NaN}',
        '{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": Infinity}',
        '{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": 1e999}',
        '{"type": "session.update", "session": {"turn_detection": {"type": "server_vad", "threshold": NaN}}}',
        '{"type": "session.update", "session": {"input_audio_format": {"sample_rate": 1e999}}}',
        '{"type": "session.update", "session": {"input_audio_format": {"sample_rate": ' + HUGE_INT + '}}}',
        '{"type": "response.cancel", "x": ' + "[" * 100_000 + "]" * 100_000 + '}',
        '{"type": "conversation.item.create", "item": {"role": "user", "content": '
        '[{"type": "input_text", "text": "\\ud800 lone surrogate"}]}}',
    ]


def _mutations(seed: int, count: int) -> list[str]:
    """Valid messages with one field replaced, truncated, or a literal spliced in, from a fixed seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        message = json.loads(json.dumps(rng.choice(VALID)))
        how = rng.randrange(4)
        if how == 0:
            key = rng.choice(list(message))
            message[key] = rng.choice(NASTY_VALUES)
            out.append(json.dumps(message))
        elif how == 1:
            raw = json.dumps(message)
            out.append(raw[: rng.randrange(len(raw))])
        elif how == 2:
            raw = json.dumps(message)
            out.append(raw[:-1] + ', "extra": ' + rng.choice(NASTY_LITERALS) + "}")
        else:
            key = rng.choice(list(message))
            out.append(json.dumps({**message, key: "__X__"}).replace('"__X__"', rng.choice(NASTY_LITERALS)))
    return out


FUZZ = _named_cases() + _mutations(seed=20261127, count=600)


def test_every_frame_decodes_or_raises_a_protocol_error():
    outcomes = {"decoded": 0, "refused": 0}
    for raw in FUZZ:
        try:
            item = decode_text(raw)
        except ProtocolError as exc:
            assert exc.code and exc.message
            outcomes["refused"] += 1
            continue
        assert isinstance(item, (AppendAudio, *cmd.Command.__args__))
        if isinstance(item, cmd.TruncateReply):
            assert math.isfinite(item.audio_end_ms)
        outcomes["decoded"] += 1
    assert outcomes["refused"] > 100 and outcomes["decoded"] > 30  # the generator exercises both sides


@pytest.mark.parametrize("raw", _named_cases())
def test_named_cases_are_protocol_errors(raw):
    with pytest.raises(ProtocolError):
        decode_text(raw)


def test_nan_cannot_wipe_the_reply_from_history():
    with pytest.raises(ProtocolError):
        decode_text('{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": NaN}')


async def test_a_nan_position_reaching_the_session_is_refused_and_the_reply_kept():
    async with Harness() as h:
        await h.session.handle(cmd.UserText("tell me something"))
        done = await h.sink.wait_for("response.done")
        history = list(h.session.conversation.history)
        await h.session.handle(cmd.TruncateReply(done.response_id, float("nan")))
        await h.sink.wait_for("error")
        assert h.session.conversation.history == history


def _text(data: str) -> SimpleNamespace:
    return SimpleNamespace(type=WSMsgType.TEXT, data=data)


async def test_server_barrier_turns_every_fuzzed_frame_into_at_most_an_error():
    server = PipelineServer(make_settings(), fake_engines())
    async with Harness(engines=server.engines) as h:
        for raw in FUZZ:
            await server._on_message(h.session, _text(raw))
        await h.session.handle(cmd.CancelResponse())
        await asyncio.sleep(0.05)
        assert not h.task.done(), "the session is still running"
        codes = {e.data["error"]["code"] for e in h.sink.of("error")}
        assert "internal_error" not in codes
        # The session still answers a plain turn.
        before = len(h.sink.of("response.done"))
        await server._on_message(h.session, _text(json.dumps(VALID[4])))
        await h.sink.wait_for("response.done", count=before + 1)


async def test_text_frame_limit_counts_bytes_not_characters():
    settings = make_settings()
    server = PipelineServer(settings, fake_engines())
    limit = settings.server.max_text_frame_bytes
    text = "é" * (limit // 2 + 10)  # fewer characters than the limit, more bytes
    raw = json.dumps({"type": "conversation.item.create",
                      "item": {"role": "user", "content": [{"type": "input_text", "text": text}]}}, ensure_ascii=False)
    assert len(raw) < limit < len(raw.encode())
    async with Harness(engines=server.engines) as h:
        await server._on_message(h.session, _text(raw))
        error = await h.sink.wait_for("error")
        assert error.data["error"]["code"] == "text_frame_too_large"


async def test_an_unexpected_failure_while_handling_a_message_is_an_error_event(monkeypatch):
    server = PipelineServer(make_settings(), fake_engines())
    async with Harness(engines=server.engines) as h:
        async def explode(_command):
            raise KeyError("bug")

        monkeypatch.setattr(h.session, "handle", explode)
        await server._on_message(h.session, _text('{"type": "response.cancel"}'))
        error = await h.sink.wait_for("error")
        assert error.data["error"]["code"] == "internal_error" and error.data["error"]["recoverable"]
        assert not h.task.done()
