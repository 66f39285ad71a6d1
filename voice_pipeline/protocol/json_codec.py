"""The browser/WebSocket protocol of docs/protocol.md: JSON text events and binary PCM16 audio."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from voice_pipeline.audio import float_to_pcm16
from voice_pipeline.errors import ProtocolError
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.protocol.events import AudioChunk, ServerEvent


@dataclass(frozen=True)
class AppendAudio:
    """Audio sent inside a JSON event (base64), handled exactly like a binary frame."""

    pcm16: bytes


MAX_AUDIO_END_MS = 24 * 3600 * 1000.0  # a reply longer than a day is not a position, it is garbage


def _finite_float(text: str) -> float:
    value = float(text)  # 1e999 parses as inf: not a number a client can mean
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]!r} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


Message = Mapping[str, Any]  # one decoded client event


def _loads(raw: str) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow a float are errors, not values."""
    # ValueError covers JSONDecodeError, integers past Python's 4,300-digit limit and the hooks above.
    try:
        message = json.loads(raw, parse_float=_finite_float, parse_constant=_no_constant)
        if "\\ud" in raw.lower():  # an escaped surrogate: only whole pairs make text (UnicodeError)
            json.dumps(message, ensure_ascii=False).encode()
        return message
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"not valid JSON: {str(exc)[:200]}") from None


strict_loads = _loads  # for the other wire protocols on this socket (protocol/openai_realtime/)


def decode_text(raw: str) -> cmd.Command | AppendAudio:
    message = _loads(raw)
    if not isinstance(message, dict):
        raise ProtocolError("invalid_json", "a text frame must hold one JSON object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_event", "missing string field 'type'")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError("unknown_event", f"unknown event type {kind[:64]!r}", event_type=kind[:64])
    try:
        decoded: cmd.Command | AppendAudio = decoder(message)
        return decoded
    except ProtocolError as exc:
        exc.event_type = exc.event_type or kind
        raise


def encode_event(event: ServerEvent) -> str:
    payload: dict[str, Any] = {"type": event.kind.value, "event_id": event.event_id, "t_ms": round(event.t * 1000.0, 1)}
    if event.turn_id is not None:
        payload["turn_id"] = event.turn_id
    if event.response_id is not None:
        payload["response_id"] = event.response_id
    payload.update(event.data)
    return json.dumps(payload, separators=(",", ":"))


def encode_audio(chunk: AudioChunk) -> bytes:
    return float_to_pcm16(chunk.samples)


def _session(field: str, required: bool) -> Callable[[Message], Mapping[str, Any]]:
    def get(message: Message) -> Mapping[str, Any]:
        value = message.get(field, None if required else {})
        if not isinstance(value, Mapping):
            raise ProtocolError("invalid_event", f"'{field}' must be an object")
        return value

    return get


def _append(message: Message) -> AppendAudio:
    audio = message.get("audio")
    if not isinstance(audio, str):
        raise ProtocolError("invalid_event", "'audio' must be a base64 string")
    try:
        return AppendAudio(base64.b64decode(audio, validate=True))
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_event", "'audio' is not valid base64") from None


def _user_text(message: Message) -> cmd.UserText:
    item = message.get("item")
    content = item.get("content") if isinstance(item, Mapping) else None
    if not isinstance(item, Mapping) or item.get("role", "user") != "user" or not isinstance(content, list):
        raise ProtocolError("invalid_event", "expected item: {role: 'user', content: [{type: 'input_text', text}]}")
    parts = [part.get("text") for part in content if isinstance(part, Mapping) and part.get("type") == "input_text"]
    texts = [text for text in parts if isinstance(text, str)]
    if not texts or len(texts) != len(parts) or not " ".join(texts).strip():
        raise ProtocolError("invalid_event", "the item has no non-empty input_text content")
    return cmd.UserText(" ".join(texts).strip())


def _item_create(message: Message) -> cmd.UserText | cmd.ToolOutput:
    """A user text turn, or the output of a tool the model called (`function_call_output`)."""
    item = message.get("item")
    if isinstance(item, Mapping) and item.get("type") == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not call_id or not isinstance(output, str):
            raise ProtocolError("invalid_event", "a function_call_output item needs call_id and output (strings)")
        return cmd.ToolOutput(call_id, output)
    return _user_text(message)


def _truncate(message: Message) -> cmd.TruncateReply:
    response_id, end_ms = message.get("response_id"), message.get("audio_end_ms")
    if (not isinstance(response_id, str) or not isinstance(end_ms, (int, float)) or isinstance(end_ms, bool)
            or not 0 <= end_ms <= MAX_AUDIO_END_MS):
        # `not 0 <= x <= max` also refuses NaN, and a huge integer never reaches float().
        raise ProtocolError("invalid_event", "expected response_id (string) and audio_end_ms (0 to 86400000 ms)")
    return cmd.TruncateReply(response_id, float(end_ms))


_DECODERS: dict[str, Callable[[Message], cmd.Command | AppendAudio]] = {
    "session.start": lambda m: cmd.StartSession(_session("session", required=False)(m)),
    "session.update": lambda m: cmd.UpdateSession(_session("session", required=True)(m)),
    "input_audio_buffer.append": _append,
    "input_audio_buffer.commit": lambda m: cmd.CommitInput(),
    "input_audio_buffer.clear": lambda m: cmd.ClearInput(),
    "conversation.item.create": _item_create,
    "conversation.item.truncate": _truncate,
    "response.cancel": lambda m: cmd.CancelResponse(),
    "response.create": lambda m: cmd.CreateResponse(),
    "conversation.reset": lambda m: cmd.ResetConversation(),
}
