"""Fuzzing the Twilio and Telnyx decoders: whatever a socket sends, the codec and the call state give
either a valid event or a ProtocolError with a code, never another exception.

Three sets: a table of named malformed messages (each with its expected code), every field of every
valid message replaced by each hostile JSON value (or deleted), and seeded text-level mutations."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator

import pytest

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.bridge import CallEnded, CallerAudio, CallerDtmf, CallStarted, MediaStreamCall
from voice_pipeline.telephony.media_streams import (
    StreamConnected,
    StreamDtmf,
    StreamFailed,
    StreamMark,
    StreamMedia,
    StreamStarted,
    StreamStopped,
    codec_for,
)

from .test_telephony_media_streams import PAYLOAD, TELNYX_CALL, TWILIO_CALL

PROVIDERS = ["twilio", "telnyx"]
MAX_COUNTER = 2**53  # chunk numbers and ms timestamps a decoded event may hold
ID_KEY = {"twilio": "streamSid", "telnyx": "stream_id"}
TELNYX_ERROR = {"event": "error", "stream_id": "s1", "sequence_number": "9",
                "payload": {"code": 100002, "title": "Unknown error", "detail": "media payload too large"}}
VALID = {"twilio": TWILIO_CALL, "telnyx": [*TELNYX_CALL, TELNYX_ERROR]}
DEEP = "[" * 30_000 + "]" * 30_000  # within the size limit, past the interpreter's recursion limit
RAW_MARK = "@@raw@@"

# JSON text put in place of a field: much of it beyond what json.dumps writes, all of it hostile.
HOSTILE = {
    "nan": "NaN", "inf": "Infinity", "-inf": "-Infinity", "1e999": "1e999", "-1e999": "-1e999",
    "huge_int": "9" * 5000, "big_int": str(10**30), "big_float": "1e308", "negative": "-1", "zero": "0",
    "fraction": "1.5", "true": "true", "null": "null", "empty": '""', "str_inf": '"Infinity"',
    "str_nan": '"nan"', "str_1e999": '"1e999"', "str_negative": '"-7"', "str_arabic_digits": '"\\u0661\\u0662"',
    "str_underscore": '"1_000"', "non_ascii": '"\\u00fc\\u00e9"', "surrogate": '"\\ud800"',
    "newline": '"a\\nb"', "long": '"' + "A" * 5000 + '"', "list": "[]", "object": "{}",
    "nested": '{"a":{"b":[1,{"c":null}]}}', "deep": "[" * 5000 + "]" * 5000,
}
DELETE = object()


def _media(provider: str, field: str, raw: str) -> str:
    """A media message whose `field` holds the JSON text `raw`."""
    media = {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": PAYLOAD, field: RAW_MARK}
    return json.dumps({"event": "media", ID_KEY[provider]: "S1", "media": media}).replace(f'"{RAW_MARK}"', raw)


def _start(provider: str, field: str, raw: str) -> str:
    """A start message whose media-format `field` ("rate", "channels") or top-level field holds `raw`."""
    message = copy.deepcopy(VALID[provider][1])
    fmt = message["start"]["mediaFormat" if provider == "twilio" else "media_format"]
    names = {"rate": "sampleRate" if provider == "twilio" else "sample_rate", "channels": "channels"}
    if field in names:
        fmt[names[field]] = RAW_MARK
    else:
        message["start"][field] = RAW_MARK
    return json.dumps(message).replace(f'"{RAW_MARK}"', raw)


def _with_id(provider: str, raw: str) -> str:
    return json.dumps({"event": "stop", ID_KEY[provider]: RAW_MARK}).replace(f'"{RAW_MARK}"', raw)


def _dtmf(provider: str, digit: str) -> str:
    return json.dumps({"event": "dtmf", ID_KEY[provider]: "S1", "dtmf": {"digit": digit}})


CALL_ID = {"twilio": "callSid", "telnyx": "call_control_id"}
PARAMETERS = {"twilio": "customParameters", "telnyx": "custom_parameters"}

# (name, message text for a provider, expected ProtocolError code)
TABLE = [
    *[(f"{field}={name}", lambda p, f=field, r=raw: _media(p, f, r), code)
      for field in ("chunk", "timestamp")
      for name, raw, code in [
          ("Infinity", "Infinity", "invalid_json"), ("-Infinity", "-Infinity", "invalid_json"),
          ("NaN", "NaN", "invalid_json"), ("1e999", "1e999", "invalid_json"), ("-1e999", "-1e999", "invalid_json"),
          ("5000 digits", "9" * 5000, "invalid_json"), ("1e308", "1e308", "invalid_event"),
          ("2**64", str(2**64), "invalid_event"), ("-5", "-5", "invalid_event"), ("'-5'", '"-5"', "invalid_event"),
          ("1.5", "1.5", "invalid_event"), ("'1e999'", '"1e999"', "invalid_event"),
          ("arabic digits", '"\\u0661\\u0662"', "invalid_event"), ("'1_000'", '"1_000"', "invalid_event"),
          ("true", "true", "invalid_event"), ("object", "{}", "invalid_event"), ("deep", DEEP, "invalid_json")]],
    ("payload non-ASCII", lambda p: _media(p, "payload", '"\\u00fc\\u00fc\\u00fc\\u00fc"'), "invalid_event"),
    ("payload surrogate", lambda p: _media(p, "payload", '"\\ud800AAA"'), "invalid_event"),
    ("payload number", lambda p: _media(p, "payload", "5"), "invalid_event"),
    ("payload bad padding", lambda p: _media(p, "payload", '"YQ"'), "invalid_event"),
    ("track object", lambda p: _media(p, "track", "{}"), "invalid_event"),
    *[(f"start {field}={raw[:10]}", lambda p, f=field, r=raw: _start(p, f, r), code)
      for field, raw, code in [
          ("rate", "Infinity", "invalid_json"), ("rate", "1e999", "invalid_json"), ("rate", "NaN", "invalid_json"),
          ("rate", "-8000", "invalid_event"), ("rate", "0", "invalid_event"), ("rate", "9" * 400, "invalid_event"),
          ("rate", '"8000x"', "invalid_event"), ("rate", "16000", "unsupported_media_format"),
          ("channels", "Infinity", "invalid_json"), ("channels", "0", "invalid_event"),
          ("channels", "-1", "invalid_event"), ("channels", "2", "unsupported_media_format")]],
    ("start parameters nested", lambda p: _start(p, PARAMETERS[p], '{"a": {"b": 1}}'), "invalid_event"),
    ("start parameters list", lambda p: _start(p, PARAMETERS[p], "[1, 2]"), "invalid_event"),
    ("start call id missing", lambda p: _start(p, CALL_ID[p], "null"), "invalid_event"),
    ("start call id non-ASCII", lambda p: _start(p, CALL_ID[p], '"\\u00fc"'), "invalid_event"),
    ("stream id number", lambda p: _with_id(p, "5"), "invalid_event"),
    ("stream id empty", lambda p: _with_id(p, '""'), "invalid_event"),
    ("stream id newline", lambda p: _with_id(p, '"S1\\nFAKE LOG LINE"'), "invalid_event"),
    ("stream id surrogate", lambda p: _with_id(p, '"\\udfff"'), "invalid_event"),
    ("stream id too long", lambda p: _with_id(p, '"' + "S" * 1000 + '"'), "invalid_event"),
    ("dtmf two digits", lambda p: _dtmf(p, "12"), "invalid_event"),
    ("dtmf letter", lambda p: _dtmf(p, "x"), "invalid_event"),
    ("not JSON", lambda p: "{not json", "invalid_json"),
    ("empty text", lambda p: "", "invalid_json"),
    ("bad UTF-8 bytes", lambda p: b"\xff\xfe\x00\x80{", "invalid_json"),
    ("deep nesting", lambda p: DEEP, "invalid_json"),
    ("deep value", lambda p: '{"event": "media", "media": ' + DEEP + "}", "invalid_json"),
    ("bare Infinity", lambda p: "Infinity", "invalid_json"),
    ("bare 1e999", lambda p: "1e999", "invalid_json"),
    ("array", lambda p: "[]", "invalid_json"),
    ("event number", lambda p: '{"event": 5}', "invalid_event"),
    ("event missing", lambda p: "{}", "invalid_event"),
    ("unknown event", lambda p: json.dumps({"event": "x" * 10_000, ID_KEY[p]: "S1"}), "unknown_event"),
    ("over-long", lambda p: _media(p, "track", '"' + "A" * 70_000 + '"'), "message_too_large"),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("name", "build", "code"), TABLE, ids=[name for name, _, _ in TABLE])
def test_malformed_messages_raise_protocol_errors_with_a_code(provider, name, build, code) -> None:
    with pytest.raises(ProtocolError) as caught:
        codec_for(provider).decode(build(provider))
    assert caught.value.code == code


def test_a_second_start_is_refused_and_the_first_stream_stays() -> None:
    call = MediaStreamCall(codec_for("twilio"), tts_rate_hz=8000)
    call.receive(json.dumps(TWILIO_CALL[1]))
    second = copy.deepcopy(TWILIO_CALL[1])
    second["streamSid"] = "MZ-other"
    with pytest.raises(ProtocolError) as caught:
        call.receive(json.dumps(second))
    assert caught.value.code == "stream_already_started" and call.stream_id == TWILIO_CALL[1]["streamSid"]


# --- generated: every field of every valid message, each hostile value -------------------------


def _paths(value, prefix=()) -> Iterator[tuple]:
    """Every key (and list index) path in a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*prefix, key)
        yield from _paths(item, (*prefix, key))


def _mutated(message: dict, path: tuple, raw) -> str:
    message = copy.deepcopy(message)
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    if raw is DELETE:
        del parent[path[-1]]
        return json.dumps(message)
    parent[path[-1]] = RAW_MARK
    return json.dumps(message).replace(f'"{RAW_MARK}"', raw)


def field_mutations(provider: str) -> Iterator[str]:
    for message in VALID[provider]:
        for path in _paths(message):
            for raw in [*HOSTILE.values(), DELETE]:
                yield _mutated(message, path, raw)


def text_mutations(provider: str, count: int, seed: int = 20240611) -> Iterator[str]:
    """Seeded edits of valid message text: deleted, inserted, replaced and repeated characters."""
    rng = random.Random(seed)
    alphabet = '{}[]":,\\0123456789eE.-+ntfaINu\u00fc\ud800\x00'
    for _ in range(count):
        text = json.dumps(rng.choice(VALID[provider]))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            match rng.randrange(4):
                case 0:
                    text = text[:at] + text[at + 1:]
                case 1:
                    text = text[:at] + rng.choice(alphabet) + text[at:]
                case 2:
                    text = text[:at] + rng.choice(alphabet) + text[at + 1:]
                case _:
                    text = text[:at] + text[at:at + 8] * rng.randint(2, 50) + text[at:]
        yield text


def _check_event(event) -> None:
    """What a decoded event promises, whatever text it came from."""
    assert isinstance(event, StreamConnected | StreamStarted | StreamMedia | StreamMark | StreamDtmf
                      | StreamStopped | StreamFailed)
    stream_id = getattr(event, "stream_id", "S")
    assert 0 < len(stream_id) <= 256 and stream_id.isascii() and stream_id.isprintable()
    if isinstance(event, StreamMedia):
        assert 0 <= event.chunk <= MAX_COUNTER and 0 <= event.timestamp_ms <= MAX_COUNTER
        assert isinstance(event.audio_mulaw, bytes) and isinstance(event.track, str)
    if isinstance(event, StreamStarted):
        assert (event.sample_rate_hz, event.channels) == (8000, 1) and event.call_id.isascii()
        assert all(isinstance(value, str) for value in event.custom_parameters.values())
    if isinstance(event, StreamDtmf):
        assert event.digit in "0123456789*#ABCD" and len(event.digit) == 1


def _outcomes(provider: str, texts: Iterator[str]) -> tuple[int, list[str]]:
    """Feed each text to a codec and to a started call; the failures that were not ProtocolErrors."""
    codec = codec_for(provider)
    call = MediaStreamCall(codec_for(provider), tts_rate_hz=8000)
    call.receive(json.dumps(VALID[provider][1]))
    failures: list[str] = []
    count = 0
    for count, text in enumerate(texts, 1):
        for step in (lambda: _check_event(codec.decode(text)), lambda: _check_call_events(call.receive(text))):
            try:
                step()
            except ProtocolError:
                pass
            except Exception as exc:  # any other outcome is the bug this test looks for
                failures.append(f"{type(exc).__name__} on {text[:120]!r}")
    return count, failures


def _check_call_events(events: list) -> None:
    assert all(isinstance(event, CallStarted | CallerAudio | CallerDtmf | CallEnded) for event in events)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_field_replaced_by_a_hostile_value_gives_an_event_or_a_protocol_error(provider) -> None:
    count, failures = _outcomes(provider, field_mutations(provider))
    assert count > 1000
    assert not failures, f"{len(failures)} of {count} mutated messages failed:\n" + "\n".join(failures[:20])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_seeded_text_mutations_give_an_event_or_a_protocol_error(provider) -> None:
    count, failures = _outcomes(provider, text_mutations(provider, 400))
    assert count == 400
    assert not failures, f"{len(failures)} of {count} mutated texts failed:\n" + "\n".join(failures[:20])
