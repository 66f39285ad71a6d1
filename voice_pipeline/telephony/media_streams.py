"""Codecs for provider media-stream WebSockets (Twilio Media Streams, Telnyx media streaming).

Each provider's JSON messages decode into the same small frozen events, and the same three
outgoing commands (`media`, `mark`, `clear`) encode into each provider's shape, so the session
never knows which provider it talks to. Pure functions of text: no I/O. Whatever arrives, a
message that is not a valid one raises `ProtocolError` with a code, never another exception.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from collections.abc import Mapping

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.phone_audio import PHONE_RATE_HZ

MULAW_ENCODINGS = frozenset({"audio/x-mulaw", "PCMU"})


@dataclass(frozen=True)
class StreamConnected:
    protocol: str
    version: str


@dataclass(frozen=True)
class StreamStarted:
    stream_id: str
    call_id: str
    encoding: str  # as the provider names it: "audio/x-mulaw" (Twilio), "PCMU" (Telnyx)
    sample_rate_hz: int
    channels: int
    tracks: tuple[str, ...] = ()
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    caller: str | None = None
    callee: str | None = None


@dataclass(frozen=True)
class StreamMedia:
    stream_id: str
    audio_mulaw: bytes
    track: str  # "inbound" or "outbound"
    chunk: int
    timestamp_ms: int


@dataclass(frozen=True)
class StreamMark:
    """The provider has played every piece of audio sent before the mark of this name."""

    stream_id: str
    name: str


@dataclass(frozen=True)
class StreamDtmf:
    stream_id: str
    digit: str


@dataclass(frozen=True)
class StreamStopped:
    stream_id: str


@dataclass(frozen=True)
class StreamFailed:
    """The provider reported an error on the stream (Telnyx `error` frames)."""

    stream_id: str
    code: str
    detail: str


StreamEvent = StreamConnected | StreamStarted | StreamMedia | StreamMark | StreamDtmf | StreamStopped | StreamFailed


class MediaStreamCodec(Protocol):
    """One provider's wire format; the pipeline-facing side is the same for all."""

    provider: str

    def decode(self, text: str | bytes) -> StreamEvent: ...

    def encode_media(self, stream_id: str, audio_mulaw: bytes) -> str: ...

    def encode_mark(self, stream_id: str, name: str) -> str: ...

    def encode_clear(self, stream_id: str) -> str: ...


# --- field access that turns a missing, mistyped or out-of-range field into a ProtocolError --------

MAX_MESSAGE_CHARS = 64 * 1024  # the WebSocket's own bound; a 20 ms media message is ~300 bytes
MAX_COUNTER = 2**53  # chunk numbers and ms timestamps: far beyond any call, exact as a JSON double
MAX_ID_CHARS = 256  # Twilio SIDs are 34 characters, Telnyx ids about 100
MAX_DETAIL_CHARS = 200  # a provider's error text, kept for the log
MAX_RATE_HZ = 384_000  # past any real audio format: a bigger rate is garbage, not an unsupported format
MAX_CHANNELS = 32  # likewise for channels
DTMF_DIGITS = frozenset("0123456789*#ABCD")
_INTEGER = re.compile(r"[+-]?[0-9]{1,16}")  # ASCII digits only: int() would also take "١٢" and "1_0"


def _not_json(text: str) -> Any:
    """json hook for NaN and +-Infinity, which are not JSON and are no number a provider sends."""
    raise ValueError(f"non-finite number {text}")


def _finite_float(text: str) -> float:
    """json hook for floats: `1e999` would parse as infinity; refuse it here, once for every field."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _load(text: str | bytes) -> dict[str, Any]:
    """One provider message as a dict with a string `event`; anything else is a ProtocolError."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise ProtocolError("invalid_json", "media-stream message is not text")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError("message_too_large", f"media-stream message is over {MAX_MESSAGE_CHARS} characters")
    try:
        message = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except RecursionError:
        raise ProtocolError("invalid_json", "media-stream message is nested too deeply") from None
    except ValueError as exc:  # also bad UTF-8 and integers over 4300 digits
        raise ProtocolError("invalid_json", f"media-stream message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("invalid_json", "media-stream message is not a JSON object")
    if not isinstance(message.get("event"), str):
        raise ProtocolError("invalid_event", "media-stream message has no string 'event'")
    return message


def _object(message: Mapping[str, Any], key: str, event: str) -> Mapping[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("invalid_event", f"'{event}' message needs an object '{key}'", event)
    return value


def _text(message: Mapping[str, Any], key: str, event: str, default: str | None = None) -> str:
    value = message.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError("invalid_event", f"'{event}' message needs a string '{key}'", event)
    return value


def _ident(message: Mapping[str, Any], key: str, event: str) -> str:
    """A stream or call id: printable ASCII of a sane length (it is logged and sent back)."""
    value = _text(message, key, event)
    if not (0 < len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable()):
        raise ProtocolError("invalid_event", f"'{event}' message has a malformed '{key}'", event)
    return value


def _as_int(value: Any) -> int | None:
    """A JSON integer, a whole float or a string of ASCII digits ("chunk": "2"); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None  # is_integer() is False for inf and nan
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


def _int(message: Mapping[str, Any], key: str, event: str, default: int | None = None, *,
         low: int = 0, high: int = MAX_COUNTER) -> int:
    number = _as_int(message.get(key, default))
    if number is None or not low <= number <= high:
        raise ProtocolError("invalid_event", f"'{event}' message needs an integer '{key}' in [{low}, {high}]", event)
    return number


def _payload(media: Mapping[str, Any], event: str) -> bytes:
    text = _text(media, "payload", event)
    try:
        if text.isascii():  # other text makes b64decode raise a plain ValueError, not binascii.Error
            return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is a ValueError
        pass
    raise ProtocolError("invalid_event", f"'{event}' payload is not base64", event)


def _digit(dtmf: Mapping[str, Any], event: str) -> str:
    digit = _text(dtmf, "digit", event)
    if digit not in DTMF_DIGITS:  # the message names no digit: a PIN must not reach a log
        raise ProtocolError("invalid_event", f"'{event}' message has no valid DTMF digit", event)
    return digit


def _scalar_text(value: Any) -> str:
    """A JSON scalar as text, "" for null, an object or a list: for fields that are only logged."""
    return str(value) if isinstance(value, (str, int, float)) else ""


def _parameters(value: Any, event: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or any(isinstance(item, (dict, list)) for item in value.values()):
        raise ProtocolError("invalid_event", f"'{event}' custom parameters must be an object of scalars", event)
    return {key: _scalar_text(item) for key, item in value.items()}


def _tracks(value: Any, event: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(track, str) for track in value):
        raise ProtocolError("invalid_event", f"'{event}' tracks must be a list of strings", event)
    return tuple(value)


def _check_format(encoding: str, rate_hz: int, channels: int, event: str) -> None:
    if encoding not in MULAW_ENCODINGS or rate_hz != PHONE_RATE_HZ or channels != 1:
        message = f"only 8 kHz mono mu-law is supported, got {encoding[:40]}/{rate_hz}/{channels}"
        raise ProtocolError("unsupported_media_format", message, event)


def _media(stream_id: str, media: Mapping[str, Any], default_counter: int | None) -> StreamMedia:
    return StreamMedia(
        stream_id,
        _payload(media, "media"),
        _text(media, "track", "media", "inbound"),
        _int(media, "chunk", "media", default_counter),
        _int(media, "timestamp", "media", default_counter),
    )


def _common(stream_id: str, message: Mapping[str, Any], event: str, provider: str) -> StreamEvent:
    """The events both providers shape alike: `mark`, `dtmf` and `stop`."""
    if event == "mark":
        return StreamMark(stream_id, _text(_object(message, "mark", event), "name", event))
    if event == "dtmf":
        return StreamDtmf(stream_id, _digit(_object(message, "dtmf", event), event))
    if event == "stop":
        return StreamStopped(stream_id)
    raise ProtocolError("unknown_event", f"unknown {provider} media-stream event '{event[:40]}'", event[:40])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


# --- Twilio Media Streams ----------------------------------------------------------------------


class TwilioCodec:
    """Twilio Media Streams: camelCase fields, `streamSid` on every message to and from Twilio."""

    provider = "twilio"

    def decode(self, text: str | bytes) -> StreamEvent:
        message = _load(text)
        event = message["event"]
        if event == "connected":
            return StreamConnected(_text(message, "protocol", event, "Call"), _text(message, "version", event, ""))
        stream_id = _ident(message, "streamSid", event)
        if event == "start":
            return self._start(stream_id, _object(message, "start", event))
        if event == "media":
            return _media(stream_id, _object(message, "media", event), None)  # Twilio always numbers media
        return _common(stream_id, message, event, "Twilio")

    def _start(self, stream_id: str, start: Mapping[str, Any]) -> StreamStarted:
        media_format = _object(start, "mediaFormat", "start")
        encoding = _text(media_format, "encoding", "start")
        rate_hz = _int(media_format, "sampleRate", "start", low=1, high=MAX_RATE_HZ)
        channels = _int(media_format, "channels", "start", 1, low=1, high=MAX_CHANNELS)
        _check_format(encoding, rate_hz, channels, "start")
        return StreamStarted(
            stream_id=stream_id,
            call_id=_ident(start, "callSid", "start"),
            encoding=encoding,
            sample_rate_hz=rate_hz,
            channels=channels,
            tracks=_tracks(start.get("tracks", ["inbound"]), "start"),
            custom_parameters=_parameters(start.get("customParameters"), "start"),
        )

    def encode_media(self, stream_id: str, audio_mulaw: bytes) -> str:
        return _dumps({"event": "media", "streamSid": stream_id, "media": {"payload": _b64(audio_mulaw)}})

    def encode_mark(self, stream_id: str, name: str) -> str:
        return _dumps({"event": "mark", "streamSid": stream_id, "mark": {"name": name}})

    def encode_clear(self, stream_id: str) -> str:
        return _dumps({"event": "clear", "streamSid": stream_id})


# --- Telnyx media streaming --------------------------------------------------------------------


class TelnyxCodec:
    """Telnyx media streaming: snake_case fields, `stream_id` on what Telnyx sends, none needed back.

    Bidirectional audio needs `stream_bidirectional_mode=rtp` and codec PCMU on the Telnyx side.
    """

    provider = "telnyx"

    def decode(self, text: str | bytes) -> StreamEvent:
        message = _load(text)
        event = message["event"]
        if event == "connected":
            return StreamConnected("Call", _text(message, "version", event, ""))
        stream_id = _ident(message, "stream_id", event)
        if event == "start":
            return self._start(stream_id, _object(message, "start", event))
        if event == "media":
            return _media(stream_id, _object(message, "media", event), 0)  # Telnyx may leave out the numbers
        if event == "error":
            payload = _object(message, "payload", event)
            detail = _scalar_text(payload.get("detail", payload.get("title", "")))[:MAX_DETAIL_CHARS]
            return StreamFailed(stream_id, _scalar_text(payload.get("code", ""))[:MAX_DETAIL_CHARS], detail)
        return _common(stream_id, message, event, "Telnyx")

    def _start(self, stream_id: str, start: Mapping[str, Any]) -> StreamStarted:
        media_format = _object(start, "media_format", "start")
        encoding = _text(media_format, "encoding", "start")
        rate_hz = _int(media_format, "sample_rate", "start", low=1, high=MAX_RATE_HZ)
        channels = _int(media_format, "channels", "start", 1, low=1, high=MAX_CHANNELS)
        _check_format(encoding, rate_hz, channels, "start")
        return StreamStarted(
            stream_id=stream_id,
            call_id=_ident(start, "call_control_id", "start"),
            encoding=encoding,
            sample_rate_hz=rate_hz,
            channels=channels,
            custom_parameters=_parameters(start.get("custom_parameters"), "start"),
            caller=start.get("from") if isinstance(start.get("from"), str) else None,
            callee=start.get("to") if isinstance(start.get("to"), str) else None,
        )

    def encode_media(self, stream_id: str, audio_mulaw: bytes) -> str:
        return _dumps({"event": "media", "media": {"payload": _b64(audio_mulaw)}})

    def encode_mark(self, stream_id: str, name: str) -> str:
        return _dumps({"event": "mark", "mark": {"name": name}})

    def encode_clear(self, stream_id: str) -> str:
        return _dumps({"event": "clear"})


CODECS: dict[str, type[TwilioCodec] | type[TelnyxCodec]] = {"twilio": TwilioCodec, "telnyx": TelnyxCodec}


def codec_for(provider: str) -> MediaStreamCodec:
    """The codec for a provider name ("twilio", "telnyx")."""
    try:
        return CODECS[provider]()
    except KeyError:
        raise ValueError(f"unknown media-stream provider {provider!r}; known: {sorted(CODECS)}") from None
