"""Decoding client events and encoding server events of docs/protocol.md."""

import base64
import json

import pytest

from voice_pipeline.errors import ProtocolError
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.protocol.events import EventKind, ServerEvent
from voice_pipeline.protocol.json_codec import AppendAudio, decode_text, encode_event


@pytest.mark.parametrize(
    "message, expected",
    [
        ({"type": "session.start"}, cmd.StartSession({})),
        ({"type": "session.update", "session": {"voice": "x"}}, cmd.UpdateSession({"voice": "x"})),
        ({"type": "input_audio_buffer.commit"}, cmd.CommitInput()),
        ({"type": "input_audio_buffer.clear"}, cmd.ClearInput()),
        ({"type": "response.cancel"}, cmd.CancelResponse()),
        ({"type": "conversation.reset"}, cmd.ResetConversation()),
        (
            {"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", "text": " hi "}]}},
            cmd.UserText("hi"),
        ),
        ({"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": 120}, cmd.TruncateReply("r1", 120.0)),
        ({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02").decode()}, AppendAudio(b"\x01\x02")),
    ],
)
def test_decodes_every_client_event(message, expected):
    assert decode_text(json.dumps(message)) == expected


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('"text"', "invalid_json"),
        ("{}", "invalid_event"),
        ('{"type": 5}', "invalid_event"),
        ('{"type": "no.such.event"}', "unknown_event"),
        ('{"type": "session.update"}', "invalid_event"),
        ('{"type": "session.update", "session": []}', "invalid_event"),
        ('{"type": "input_audio_buffer.append", "audio": "@@@"}', "invalid_event"),
        ('{"type": "input_audio_buffer.append"}', "invalid_event"),
        ('{"type": "conversation.item.create", "item": {"role": "user", "content": []}}', "invalid_event"),
        ('{"type": "conversation.item.create", "item": {"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}}', "invalid_event"),
        ('{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": -1}', "invalid_event"),
        ('{"type": "conversation.item.truncate", "response_id": "r1", "audio_end_ms": true}', "invalid_event"),
        ("[" * 100000 + "]" * 100000, "invalid_json"),
    ],
)
def test_malformed_messages_raise_protocol_errors_with_codes(raw, code):
    with pytest.raises(ProtocolError) as info:
        decode_text(raw)
    assert info.value.code == code


def test_error_names_the_event_type_it_was_about():
    with pytest.raises(ProtocolError) as info:
        decode_text('{"type": "session.update", "session": 3}')
    assert info.value.event_type == "session.update"


def test_server_event_encoding_uses_wire_names_and_ids():
    event = ServerEvent(EventKind.RESPONSE_TEXT_DELTA, "s1", t=12.3456, turn_id="t1", response_id="r2", data={"delta": "Hi"})
    wire = json.loads(encode_event(event))
    assert wire == {"type": "response.text.delta", "event_id": event.event_id, "t_ms": 12345.6,
                    "turn_id": "t1", "response_id": "r2", "delta": "Hi"}
