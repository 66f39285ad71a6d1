"""Codecs for provider media-stream WebSockets (Twilio Media Streams, Telnyx media streaming).

Each provider's JSON messages decode into the same small frozen events, and the same three
outgoing commands (`media`, `mark`, `clear`) encode into each provider's shape, so the session
never knows which provider it talks to. Pure functions of text: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Protocol
from collections.abc import Mapping

from voice_pipeline.errors import ProtocolError

MULAW_ENCODINGS = frozenset({"audio/x-mulaw", "PCMU"})
PHONE_RATE_HZ = 8_000


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


# --- field access that turns a missing or mistyped field into a ProtocolError -----------------


def _load(text: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
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


def _int(message: Mapping[str, Any], key: str, event: str, default: int | None = None) -> int:
    value = message.get(key, default)
    if isinstance(value, bool):
        value = None
    try:
        return int(value)  # providers send numbers as strings ("chunk": "2")
    except (TypeError, ValueError):
        raise ProtocolError("invalid_event", f"'{event}' message needs an integer '{key}'", event) from None


def _payload(media: Mapping[str, Any], event: str) -> bytes:
    try:
        return base64.b64decode(_text(media, "payload", event), validate=True)
    except binascii.Error:
        raise ProtocolError("invalid_event", f"'{event}' payload is not base64", event) from None


def _parameters(value: Any, event: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("invalid_event", f"'{event}' custom parameters must be an object", event)
    return {str(key): str(item) for key, item in value.items()}


def _check_format(encoding: str, rate_hz: int, event: str) -> None:
    if encoding not in MULAW_ENCODINGS or rate_hz != PHONE_RATE_HZ:
        message = f"only 8 kHz mu-law is supported, got {encoding}/{rate_hz}"
        raise ProtocolError("unsupported_media_format", message, event)


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
        stream_id = _text(message, "streamSid", event)
        if event == "start":
            return self._start(stream_id, _object(message, "start", event))
        if event == "media":
            media = _object(message, "media", event)
            return StreamMedia(
                stream_id,
                _payload(media, event),
                _text(media, "track", event, "inbound"),
                _int(media, "chunk", event),
                _int(media, "timestamp", event),
            )
        if event == "mark":
            return StreamMark(stream_id, _text(_object(message, "mark", event), "name", event))
        if event == "dtmf":
            return StreamDtmf(stream_id, _text(_object(message, "dtmf", event), "digit", event))
        if event == "stop":
            return StreamStopped(stream_id)
        raise ProtocolError("unknown_event", f"unknown Twilio media-stream event '{event}'", event)

    def _start(self, stream_id: str, start: Mapping[str, Any]) -> StreamStarted:
        media_format = _object(start, "mediaFormat", "start")
        encoding = _text(media_format, "encoding", "start")
        rate_hz = _int(media_format, "sampleRate", "start")
        _check_format(encoding, rate_hz, "start")
        tracks = start.get("tracks", ["inbound"])
        return StreamStarted(
            stream_id=stream_id,
            call_id=_text(start, "callSid", "start"),
            encoding=encoding,
            sample_rate_hz=rate_hz,
            channels=_int(media_format, "channels", "start", 1),
            tracks=tuple(str(track) for track in tracks) if isinstance(tracks, list) else (),
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
        stream_id = _text(message, "stream_id", event)
        if event == "start":
            return self._start(stream_id, _object(message, "start", event))
        if event == "media":
            media = _object(message, "media", event)
            return StreamMedia(
                stream_id,
                _payload(media, event),
                _text(media, "track", event, "inbound"),
                _int(media, "chunk", event, 0),
                _int(media, "timestamp", event, 0),
            )
        if event == "mark":
            return StreamMark(stream_id, _text(_object(message, "mark", event), "name", event))
        if event == "dtmf":
            return StreamDtmf(stream_id, _text(_object(message, "dtmf", event), "digit", event))
        if event == "stop":
            return StreamStopped(stream_id)
        if event == "error":
            payload = _object(message, "payload", event)
            detail = payload.get("detail", payload.get("title", ""))
            return StreamFailed(stream_id, str(payload.get("code", "")), str(detail))
        raise ProtocolError("unknown_event", f"unknown Telnyx media-stream event '{event}'", event)

    def _start(self, stream_id: str, start: Mapping[str, Any]) -> StreamStarted:
        media_format = _object(start, "media_format", "start")
        encoding = _text(media_format, "encoding", "start")
        rate_hz = _int(media_format, "sample_rate", "start")
        _check_format(encoding, rate_hz, "start")
        return StreamStarted(
            stream_id=stream_id,
            call_id=_text(start, "call_control_id", "start"),
            encoding=encoding,
            sample_rate_hz=rate_hz,
            channels=_int(media_format, "channels", "start", 1),
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
