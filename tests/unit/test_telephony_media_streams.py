"""Twilio and Telnyx media-stream messages decode into the same events; commands encode per provider."""

from __future__ import annotations

import base64
import json

import pytest

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.media_streams import (
    StreamConnected,
    StreamDtmf,
    StreamFailed,
    StreamMark,
    StreamMedia,
    StreamStarted,
    StreamStopped,
    TelnyxCodec,
    TwilioCodec,
    codec_for,
)

AUDIO = bytes([0xFF, 0x7F, 0x00, 0x80]) * 40  # 160 mu-law bytes = 20 ms
PAYLOAD = base64.b64encode(AUDIO).decode()

TWILIO_CALL = [
    {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
        "start": {
            "accountSid": "AC123",
            "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
            "callSid": "CA123",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"caller": "+15551230000"},
        },
    },
    {
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": PAYLOAD},
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
    },
    {"event": "dtmf", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0", "sequenceNumber": "5",
     "dtmf": {"track": "inbound_track", "digit": "1"}},
    {"event": "mark", "sequenceNumber": "4", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
     "mark": {"name": "vp-t1-1"}},
    {"event": "stop", "sequenceNumber": "5", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
     "stop": {"accountSid": "AC123", "callSid": "CA123"}},
]

TELNYX_CALL = [
    {"event": "connected", "version": "1.0.0"},
    {
        "event": "start",
        "sequence_number": "1",
        "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
        "start": {
            "user_id": "3E6F995F",
            "call_control_id": "v2:T02llQxIyaRkh",
            "call_session_id": "ff55a038",
            "from": "+13122010094",
            "to": "+13122123456",
            "custom_parameters": {"customer_id": "customer_123"},
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        },
    },
    {
        "event": "media",
        "sequence_number": "4",
        "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": PAYLOAD},
        "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
    },
    {"event": "dtmf", "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC", "sequence_number": "5",
     "dtmf": {"digit": "1"}},
    {"event": "mark", "sequence_number": "6", "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
     "mark": {"name": "vp-t1-1"}},
    {"event": "stop", "sequence_number": "7", "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
     "stop": {"user_id": "3E6F995F", "call_control_id": "v2:T02llQxIyaRkh"}},
]


def _decode_all(codec, messages):
    return [codec.decode(json.dumps(message)) for message in messages]


def test_twilio_call_decodes_in_order() -> None:
    events = _decode_all(TwilioCodec(), TWILIO_CALL)
    sid = "MZ18ad3ab5a668481ce02b83e7395059f0"
    assert events == [
        StreamConnected("Call", "1.0.0"),
        StreamStarted(sid, "CA123", "audio/x-mulaw", 8000, 1, ("inbound",), {"caller": "+15551230000"}),
        StreamMedia(sid, AUDIO, "inbound", 1, 5),
        StreamDtmf(sid, "1"),
        StreamMark(sid, "vp-t1-1"),
        StreamStopped(sid),
    ]


def test_telnyx_call_decodes_to_the_same_kinds_of_event() -> None:
    events = _decode_all(TelnyxCodec(), TELNYX_CALL)
    sid = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
    assert events == [
        StreamConnected("Call", "1.0.0"),
        StreamStarted(sid, "v2:T02llQxIyaRkh", "PCMU", 8000, 1, (), {"customer_id": "customer_123"},
                      caller="+13122010094", callee="+13122123456"),
        StreamMedia(sid, AUDIO, "inbound", 2, 5),
        StreamDtmf(sid, "1"),
        StreamMark(sid, "vp-t1-1"),
        StreamStopped(sid),
    ]
    twilio_kinds = [type(event) for event in _decode_all(TwilioCodec(), TWILIO_CALL)]
    assert [type(event) for event in events] == twilio_kinds


def test_telnyx_error_frame() -> None:
    message = {"event": "error", "stream_id": "s1", "sequence_number": "9",
               "payload": {"code": 100002, "title": "Unknown error", "detail": "media payload too large"}}
    assert TelnyxCodec().decode(json.dumps(message)) == StreamFailed("s1", "100002", "media payload too large")


def test_outgoing_twilio_commands_byte_for_byte() -> None:
    codec = TwilioCodec()
    assert codec.encode_media("MZ1", b"\xff\x00") == '{"event":"media","streamSid":"MZ1","media":{"payload":"/wA="}}'
    assert codec.encode_mark("MZ1", "vp-t1-1") == '{"event":"mark","streamSid":"MZ1","mark":{"name":"vp-t1-1"}}'
    assert codec.encode_clear("MZ1") == '{"event":"clear","streamSid":"MZ1"}'


def test_outgoing_telnyx_commands_byte_for_byte() -> None:
    codec = TelnyxCodec()
    assert codec.encode_media("s1", b"\xff\x00") == '{"event":"media","media":{"payload":"/wA="}}'
    assert codec.encode_mark("s1", "vp-t1-1") == '{"event":"mark","mark":{"name":"vp-t1-1"}}'
    assert codec.encode_clear("s1") == '{"event":"clear"}'


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
def test_sent_media_decodes_back_to_the_same_audio(provider: str) -> None:
    codec = codec_for(provider)
    sent = json.loads(codec.encode_media("sid", AUDIO))
    id_key = "streamSid" if provider == "twilio" else "stream_id"
    sent.update({id_key: "sid"})
    sent["media"].update({"chunk": "1", "timestamp": "0"})
    event = codec.decode(json.dumps(sent))
    assert isinstance(event, StreamMedia) and event.audio_mulaw == AUDIO


def test_unknown_provider() -> None:
    with pytest.raises(ValueError, match="twilio"):
        codec_for("plivo")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"no_event": 1}', "invalid_event"),
        ('{"event": "media", "streamSid": "s"}', "invalid_event"),
        ('{"event": "media", "media": {"payload": "", "chunk": "1", "timestamp": "1"}}', "invalid_event"),
        ('{"event": "media", "streamSid": "s", "media": {"payload": "!!", "chunk": "1", "timestamp": "1"}}',
         "invalid_event"),
        ('{"event": "media", "streamSid": "s", "media": {"payload": "", "chunk": "x", "timestamp": "1"}}',
         "invalid_event"),
        ('{"event": "mark", "streamSid": "s", "mark": {}}', "invalid_event"),
        ('{"event": "dance", "streamSid": "s"}', "unknown_event"),
        ('{"event": "start", "streamSid": "s", "start": {"callSid": "c", "mediaFormat": '
         '{"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}}}', "unsupported_media_format"),
    ],
)
def test_malformed_twilio_messages_raise_protocol_errors(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        TwilioCodec().decode(text)
    assert caught.value.code == code


def test_malformed_telnyx_start_names_the_event() -> None:
    text = '{"event": "start", "stream_id": "s", "start": {"call_control_id": "c"}}'
    with pytest.raises(ProtocolError) as caught:
        TelnyxCodec().decode(text)
    assert (caught.value.code, caught.value.event_type) == ("invalid_event", "start")
