"""The OpenAI Realtime (GA) translation without sockets or models: detection, client events, server
events, G.711 A-law, the session's tool exchange, and the gate letting the SDK's bearer key in."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from voice_pipeline.app.server import PipelineServer
from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.errors import ProtocolError
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.protocol.events import AudioChunk, EventKind, ServerEvent
from voice_pipeline.protocol.json_codec import decode_text
from voice_pipeline.protocol.openai_realtime import Ack, Fail, GaDecoder, GaEncoder, GaState, Pcm16, wants_ga
from voice_pipeline.protocol.openai_realtime.client_events import StateChange
from voice_pipeline.protocol.openai_realtime.g711 import alaw_to_pcm16, pcm16_to_alaw
from voice_pipeline.protocol.session_config import SessionConfig
from voice_pipeline.reply.tools import SessionTools, ToolCall, ToolExchange


def test_ga_is_chosen_by_model_or_subprotocol_and_ours_is_the_default():
    assert wants_ga({"model": "gpt-realtime"}, {})
    assert wants_ga({}, {"Sec-WebSocket-Protocol": "realtime, openai-insecure-api-key.abc"})
    assert not wants_ga({"session_token": "t"}, {})  # the browser client and the bench


def decode(decoder: GaDecoder, event: dict) -> list:
    return decoder.decode(json.dumps(event))


def test_session_update_maps_formats_vad_and_tools():
    state = GaState()
    actions = decode(GaDecoder(state), {"type": "session.update", "session": {
        "type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.", "output_modalities": ["text"],
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}], "tool_choice": "required",
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "transcription": None,
                            "turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
                  "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}}}})
    change, update = actions
    assert isinstance(change, StateChange) and isinstance(update, cmd.UpdateSession)
    assert change.changes["input_format"] == "audio/pcmu" and change.changes["transcription"] is None
    assert change.changes["turn_detection_type"] == "semantic_vad"
    fields = update.config
    assert fields["input_audio_format"]["sample_rate"] == 8000 and fields["output_audio_format"]["sample_rate"] == 24000
    assert fields["turn_detection"] == {"type": "server_vad", "silence_duration_ms": 200}
    config = SessionConfig().updated(fields)  # what the session does with them
    assert config.tools[0]["name"] == "lookup" and config.tool_choice == "required" and not config.audio_out


@pytest.mark.parametrize("session", [
    {"type": "transcription"}, {"type": "realtime", "bogus": 1},
    {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
    {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 7}}}},
    {"type": "realtime", "tools": [{"type": "mcp", "server_url": "http://x"}]},
])
def test_session_update_refusals_are_errors(session):
    [fail] = decode(GaDecoder(GaState()), {"type": "session.update", "event_id": "evt_1", "session": session})
    assert isinstance(fail, Fail) and fail.event_type == "session.update"


def test_appends_are_decoded_and_cut_into_100_ms_frames():
    state = GaState()
    decoder = GaDecoder(state)
    pcm = np.arange(24_000 * 3 // 10, dtype=np.int16)  # 300 ms at 24 kHz
    frames = decode(decoder, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm.tobytes()).decode()})
    assert [len(f.data) for f in frames] == [4800, 4800, 4800] and b"".join(f.data for f in frames) == pcm.tobytes()
    state.input_format = "audio/pcma"
    [frame] = decode(decoder, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\xd5" * 80).decode()})
    assert isinstance(frame, Pcm16) and len(frame.data) == 160  # 10 ms of 8 kHz A-law -> PCM16


def test_text_items_wait_for_response_create_and_tool_outputs_go_to_the_session():
    decoder = GaDecoder(GaState())
    [ack] = decode(decoder, {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}})
    assert isinstance(ack, Ack) and ack.kind is EventKind.ITEM_ADDED
    assert decode(decoder, {"type": "response.create"}) == [cmd.UserText("Hello there")]
    assert decode(decoder, {"type": "response.create"}) == [cmd.CreateResponse()]
    output, ack = decode(decoder, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "c1", "output": "{}"}})
    assert output == cmd.ToolOutput("c1", "{}") and ack.data["item"]["call_id"] == "c1"
    [fail] = decode(decoder, {"type": "conversation.item.create", "item": {"type": "message", "role": "system",
                                                                          "content": [{"type": "input_text", "text": "x"}]}})
    assert isinstance(fail, Fail)


def test_a_reply_becomes_a_ga_response_with_its_items():
    state = GaState()
    encoder = GaEncoder(state)

    def event(kind: EventKind, **data) -> list[str]:
        return [w["type"] for w in encoder.encode_event(ServerEvent(kind, "s1", turn_id="t1", response_id="r1", data=data))]

    assert event(EventKind.RESPONSE_CREATED) == ["response.created", "response.output_item.added",
                                                 "conversation.item.added", "response.content_part.added"]
    assert event(EventKind.RESPONSE_TEXT_DELTA, delta="One moment.") == ["response.output_audio_transcript.delta"]
    [audio] = encoder.encode_audio(AudioChunk("r1", np.zeros(240, dtype=np.float32), 24_000))
    assert audio["type"] == "response.output_audio.delta" and len(base64.b64decode(audio["delta"])) == 480
    assert event(EventKind.FUNCTION_CALL, call_id="c1", name="f", arguments="{}")[-3:] == [
        "response.function_call_arguments.done", "response.output_item.done", "conversation.item.done"]
    wires = encoder.encode_event(ServerEvent(EventKind.RESPONSE_DONE, "s1", response_id="r1",
                                             data={"status": "completed", "text": "One moment."}))
    assert [w["type"] for w in wires] == ["response.output_audio.done", "response.output_audio_transcript.done",
                                          "response.content_part.done", "response.output_item.done",
                                          "conversation.item.done", "response.done"]
    done = wires[-1]["response"]
    assert [item["type"] for item in done["output"]] == ["message", "function_call"]
    assert done["usage"]["output_tokens"] == 1 and state.response_items == {"item_r1": "r1"}


def test_ga_clients_get_the_clear_but_no_pause_or_resume_which_openai_does_not_have():
    encoder = GaEncoder(GaState())
    encoder.encode_event(ServerEvent(EventKind.RESPONSE_CREATED, "s1", turn_id="t1", response_id="r1"))

    def event(kind: EventKind, **data) -> list[str]:
        return [w["type"] for w in encoder.encode_event(ServerEvent(kind, "s1", response_id="r1", data=data))]

    assert event(EventKind.OUTPUT_AUDIO_PAUSED, audio_ms=400) == []
    assert event(EventKind.OUTPUT_AUDIO_RESUMED, audio_ms=400) == []
    assert event(EventKind.OUTPUT_AUDIO_CLEARED, reason="barge_in") == ["output_audio_buffer.cleared"]


def test_errors_take_openai_shape_with_the_client_event_id():
    state = GaState()
    GaDecoder(state).decode(json.dumps({"type": "nope", "event_id": "evt_9"}))
    [wire] = GaEncoder(state).encode_event(ServerEvent(EventKind.ERROR, "s1", data={"error": {
        "code": "unknown_event", "message": "m", "recoverable": True, "event_type": "nope"}}))
    assert wire["error"] == {"type": "invalid_request_error", "code": "unknown_event", "message": "m", "param": None,
                             "event_id": "evt_9"}


def test_pcmu_output_is_one_byte_per_sample():
    state = GaState(output_format="audio/pcmu")
    encoder = GaEncoder(state)
    encoder.encode_event(ServerEvent(EventKind.RESPONSE_CREATED, "s1", response_id="r1"))
    [audio] = encoder.encode_audio(AudioChunk("r1", np.zeros(160, dtype=np.float32), 8000))
    assert base64.b64decode(audio["delta"]) == b"\xff" * 160


def test_alaw_round_trip_follows_g711():
    pcm = (np.sin(np.arange(2000) / 7) * 20000).astype(np.int16)
    back = np.frombuffer(alaw_to_pcm16(pcm16_to_alaw(pcm)), dtype="<i2").astype(np.int32)
    assert np.max(np.abs(back - pcm) / np.maximum(np.abs(pcm), 256)) < 0.07  # 13-bit log steps
    assert list(np.frombuffer(alaw_to_pcm16(b"\xd5\x55"), dtype="<i2")) == [8, -8]


def test_our_protocol_takes_function_outputs_too_and_validates_tools():
    assert decode_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "c", "output": "1"}})) == cmd.ToolOutput("c", "1")
    with pytest.raises(ProtocolError):
        SessionConfig().updated({"tools": [{"type": "function", "name": "bad name!"}]})


def test_the_tool_exchange_continues_only_when_every_output_is_in():
    tools = SessionTools()
    request = tools.request([{"name": "f"}], "auto", "what is up")
    prompt = [ChatMessage("system", "s"), ChatMessage("user", "what is up")]
    request.called(ToolExchange(prompt, "One moment.", [ToolCall("c1", "f", "{}"), ToolCall("c2", "f", "{}")]))
    assert not tools.add_output("other", "x") and tools.add_output("c1", "1") and not tools.ready
    assert tools.add_output("c2", "2") and tools.ready
    continuing = tools.request([{"name": "f"}], "auto", None)
    assert continuing is not None and continuing.continuing is not None and not tools.ready
    wire = continuing.continuing.wire_messages()
    assert [m["role"] for m in wire] == ["system", "user", "assistant", "tool", "tool"]
    assert "returned 2" in continuing.continuing.plain_messages()[-1].content


async def first_event(port: int, key: str):
    client = AsyncOpenAI(api_key=key, base_url=f"http://127.0.0.1:{port}/v1")
    async with client.realtime.connect(model="gpt-realtime") as connection:
        return await connection.recv()


@pytest.mark.parametrize("auth_token", ["gate-token-0123456789abcdef", ""])
async def test_the_sdk_bearer_key_passes_the_gate(auth_token):
    """A token server takes the SDK's `Authorization: Bearer TOKEN` and refuses other keys; a
    loopback server without a token takes any key. Without models the server then refuses the
    session itself, in OpenAI's error shape."""
    settings = Settings()
    settings.server.auth_token = auth_token
    server = TestServer(PipelineServer(settings).app())
    await server.start_server()
    try:
        event = await first_event(server.port, auth_token or "any-key")
        assert event.type == "error" and event.error.type == "server_error" and event.error.code == "not_ready"
        if auth_token:
            with pytest.raises(Exception, match="401"):
                await first_event(server.port, "wrong-key")
    finally:
        await server.close()
