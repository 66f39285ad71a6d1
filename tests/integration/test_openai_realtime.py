"""The official `openai` SDK's Realtime client, unchanged, against a real server on loopback.

Spoken questions go in as 24 kHz base64 PCM; transcripts, reply audio and text come out in GA
event shapes; a barge-in is `response.cancel` plus `conversation.item.truncate`; a function call
makes the round trip through a fake tool-calling OpenAI-compatible model (it stands for the
remote model of the `large` route); malformed events get OpenAI-shaped errors and the session
goes on. Asserts order and presence, never a number of milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from voice_pipeline.audio import float_to_pcm16, read_wav, resample

from .conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.integration
RATE_HZ = 24_000
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
STORY = ("Once upon a time a small dragon lived under a grey mountain. Every morning it counted the clouds, "
         "and every evening it told the stars what it had seen. ") * 4


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(payload)}\n\n".encode()


class FakeToolModel:
    """An OpenAI-compatible chat endpoint that calls `get_weather` for weather questions, answers
    from the tool's output once it is in the context, and streams a long story on request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        messages = body["messages"]
        last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        tool_results = [m for m in messages if m["role"] == "tool"]
        await response.write(_chunk({"role": "assistant"}))
        if tool_results:
            temp = json.loads(tool_results[-1]["content"])["temp_c"]
            for word in f"It is {temp} degrees in Paris right now.".split(" "):
                await response.write(_chunk({"content": word + " "}))
            await response.write(_chunk({}, "stop"))
        elif body.get("tools") and "weather" in last_user.lower():
            call = {"index": 0, "id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            await response.write(_chunk({"tool_calls": [call]}))
            for piece in ('{"city": ', '"Paris"}'):
                await response.write(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            await response.write(_chunk({}, "tool_calls"))
        else:
            text = STORY if "story" in last_user.lower() else "Paris is the capital of France."
            for word in text.split(" "):
                await response.write(_chunk({"content": word + " "}))
                await asyncio.sleep(0.02 if "story" in last_user.lower() else 0)
            await response.write(_chunk({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "fake-tools"}]})


@pytest.fixture(scope="module")
def fake_model():
    """The fake model on its own loop in a thread, for as long as the module's server uses it."""
    model, port, loop = FakeToolModel(), free_port(), asyncio.new_event_loop()
    started = threading.Event()

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", model.chat)
        app.router.add_get("/v1/models", model.models)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run_until_complete(serve())
    thread = threading.Thread(target=lambda: (started.set(), loop.run_forever()), daemon=True)
    thread.start()
    started.wait()
    yield model, f"http://127.0.0.1:{port}/v1"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def ga_server(tmp_path_factory, fake_model):
    _, url = fake_model
    server = start_server(tmp_path_factory.mktemp("openai-realtime"), VP_REMOTE_URL=url, VP_REMOTE_MODEL="fake-tools",
                          VP_REMOTE_FIRST_TOKEN_MS="30000", VP_REMOTE_STALL_MS="30000",
                          VP_TELEPHONY_SIP_ENABLED="false")
    yield server
    stop_server(server)


def _client(server) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="any-key-on-loopback", base_url=f"{server.http}/v1")


async def _until(connection, wanted: str, events: list[Any], timeout_s: float = 120.0, **match: Any) -> Any:
    """Read events into `events` until one of type `wanted` (with the given fields) arrives."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await connection.recv()
            events.append(event)
            if event.type == wanted and all(getattr(event, key, None) == value for key, value in match.items()):
                return event


def _types(events: list[Any]) -> list[str]:
    return [event.type for event in events]


async def _speak(connection, wav_path) -> None:
    """Stream a WAV as 24 kHz base64 PCM16 appends of 40 ms, at twice real time, then silence."""
    audio, rate = read_wav(wav_path)
    audio = np.concatenate([resample(audio, rate, RATE_HZ), np.zeros(RATE_HZ * 3 // 2, dtype=np.float32)])
    step = RATE_HZ * 40 // 1000
    for start in range(0, len(audio), step):
        pcm = float_to_pcm16(audio[start:start + step])
        await connection.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
        await asyncio.sleep(0.02)


async def test_spoken_question_gets_transcript_text_and_audio(ga_server, piper_say):
    events: list[Any] = []
    async with _client(ga_server).realtime.connect(model="gpt-realtime") as connection:
        created = await _until(connection, "session.created", events, 30)
        assert created.session.audio.input.format.rate == RATE_HZ
        await connection.session.update(session={
            "type": "realtime", "instructions": "Answer in one short sentence.", "output_modalities": ["audio"],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE_HZ},
                                "transcription": {"model": "whisper-1"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
                      "output": {"format": {"type": "audio/pcm", "rate": RATE_HZ}, "voice": "marin"}}})
        updated = await _until(connection, "session.updated", events, 30)
        assert updated.session.audio.input.turn_detection.silence_duration_ms == 500
        await _speak(connection, piper_say("What is the capital of France?"))
        done = await _until(connection, "response.done", events)
    kinds = _types(events)
    for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "conversation.item.input_audio_transcription.completed",
                 "response.created", "response.output_audio.delta", "response.output_audio_transcript.delta",
                 "response.output_audio.done", "response.output_audio_transcript.done", "response.output_item.done"):
        assert kind in kinds, kind
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.committed") \
        < kinds.index("response.created") < kinds.index("response.output_audio.delta") < kinds.index("response.done")
    transcript = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert "france" in transcript.transcript.lower()
    audio = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    assert len(audio) > RATE_HZ // 2 and np.abs(np.frombuffer(audio, "<i2")).max() > 1000  # audible, 24 kHz PCM16
    assert done.response.status == "completed" and done.response.usage.output_tokens > 0
    spoken = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    assert spoken and done.response.output[0].content[0].transcript == spoken
    deltas = [e for e in events if e.type == "response.output_audio.delta"]
    assert {e.item_id for e in deltas} == {done.response.output[0].id}


async def test_text_item_answered_as_text_after_response_create(ga_server):
    events: list[Any] = []
    async with _client(ga_server).realtime.connect(model="gpt-realtime") as connection:
        await _until(connection, "session.created", events, 30)
        await connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await _until(connection, "session.updated", events, 30)
        await connection.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "What time is it?"}]})
        added = await _until(connection, "conversation.item.added", events, 30)
        assert added.item.role == "user"
        await connection.response.create()
        done = await _until(connection, "response.done", events)
    kinds = _types(events)
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert "response.output_audio.delta" not in kinds  # text only: no audio at all
    text = next(e for e in events if e.type == "response.output_text.done").text
    assert text and done.response.output[0].content[0].text == text


async def test_function_call_round_trip(ga_server, fake_model):
    model, _ = fake_model
    events: list[Any] = []
    async with _client(ga_server).realtime.connect(model="gpt-realtime") as connection:
        await _until(connection, "session.created", events, 30)
        await connection.session.update(session={"type": "realtime", "tools": [WEATHER_TOOL], "tool_choice": "auto"})
        updated = await _until(connection, "session.updated", events, 30)
        assert [tool.name for tool in updated.session.tools] == ["get_weather"]
        await connection.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What's the weather like in Paris today?"}]})
        await connection.response.create()
        call = await _until(connection, "response.function_call_arguments.done", events)
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
        first = await _until(connection, "response.done", events)
        assert [item.type for item in first.response.output] == ["message", "function_call"]
        assert first.response.output[1].call_id == call.call_id
        await connection.conversation.item.create(item={
            "type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temp_c": 21})})
        await _until(connection, "conversation.item.added", events, 30)
        await connection.response.create()
        second = await _until(connection, "response.done", events)
    kinds = _types(events)
    assert kinds.index("response.function_call_arguments.delta") < kinds.index("response.function_call_arguments.done")
    assert second.response.status == "completed"
    assert "21 degrees" in second.response.output[0].content[0].transcript
    tools_sent = [r for r in model.requests if r.get("tools")]
    assert tools_sent[0]["tools"][0]["function"]["name"] == "get_weather"
    continuation = tools_sent[-1]["messages"]
    assert continuation[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": '{"temp_c": 21}'}
    assert continuation[-2]["tool_calls"][0]["function"]["name"] == "get_weather"


async def test_barge_in_with_response_cancel_and_truncate(ga_server):
    events: list[Any] = []
    async with _client(ga_server).realtime.connect(model="gpt-realtime") as connection:
        await _until(connection, "session.created", events, 30)
        await connection.session.update(session={"type": "realtime", "tools": [WEATHER_TOOL]})  # the large route
        await _until(connection, "session.updated", events, 30)
        await connection.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me a long story."}]})
        await connection.response.create()
        first_audio = await _until(connection, "response.output_audio.delta", events)
        await connection.response.cancel()
        await _until(connection, "output_audio_buffer.cleared", events, 30)
        cleared_at = len(events)
        done = await _until(connection, "response.done", events, 30)
        await connection.conversation.item.truncate(item_id=first_audio.item_id, content_index=0, audio_end_ms=400)
        truncated = await _until(connection, "conversation.item.truncated", events, 30)
    assert done.response.status == "cancelled" and done.response.status_details.reason == "client_cancelled"
    assert not [e for e in events[cleared_at:] if e.type == "response.output_audio.delta"]
    assert truncated.item_id == first_audio.item_id and truncated.audio_end_ms == 400
    assert len(done.response.output[0].content[0].transcript) < len(STORY.strip())


async def test_malformed_events_get_openai_errors_and_the_session_goes_on(ga_server):
    events: list[Any] = []
    async with _client(ga_server).realtime.connect(model="gpt-realtime") as connection:
        await _until(connection, "session.created", events, 30)
        raw = connection._connection  # the SDK validates what it sends; a broken client does not
        await raw.send("{not json")
        bad_json = await _until(connection, "error", events, 30)
        await raw.send(json.dumps({"type": "conversation.bogus", "event_id": "evt_bogus"}))
        unknown = await _until(connection, "error", events, 30)
        await raw.send(json.dumps({"type": "session.update", "event_id": "evt_fmt",
                                   "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/flac"}}}}}))
        bad_format = await _until(connection, "error", events, 30)
        await raw.send(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
        bad_audio = await _until(connection, "error", events, 30)
        await raw.send(json.dumps({"type": "conversation.item.truncate", "item_id": "item_nope", "audio_end_ms": 5}))
        bad_item = await _until(connection, "error", events, 30)
        await connection.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "What time is it?"}]})
        await connection.response.create()
        done = await _until(connection, "response.done", events)
    assert bad_json.error.type == "invalid_request_error" and bad_json.error.code == "invalid_json"
    assert unknown.error.code == "unknown_event" and unknown.error.event_id == "evt_bogus"
    assert bad_format.error.event_id == "evt_fmt" and bad_format.error.message
    assert bad_audio.error.code == "invalid_event"
    assert bad_item.error.code == "item_truncate_invalid_item_id"
    assert "session.updated" not in _types(events)  # the refused update changed nothing
    assert done.response.status == "completed"
