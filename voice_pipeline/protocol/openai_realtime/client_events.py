"""GA client events -> what the connection does: session Commands, input audio, acknowledgements, errors.

Pure: `GaDecoder.decode(text)` returns actions and touches only the connection's GaState. A
user text item waits for `response.create` (as in OpenAI's API); without pending text,
`response.create` continues a reply after its tool outputs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from voice_pipeline.errors import ProtocolError
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.protocol.events import EventKind
from voice_pipeline.protocol.json_codec import MAX_AUDIO_END_MS, strict_loads
from voice_pipeline.protocol.openai_realtime.g711 import alaw_to_pcm16, mulaw_to_pcm16
from voice_pipeline.protocol.openai_realtime.session_map import session_fields
from voice_pipeline.protocol.openai_realtime.state import FORMAT_RATES_HZ, PCMA, PCMU, GaState

FRAME_MS = 100  # appends are cut into frames of at most this (the session's own per-frame limit)
_MAX_TEXT_CHARS = 8000


@dataclass(frozen=True)
class Pcm16:
    """Input audio, PCM16 at the session's input rate, at most FRAME_MS long."""

    data: bytes


@dataclass(frozen=True)
class Ack:
    """An event the connection answers itself (through the session's outbox, in order)."""

    kind: EventKind
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    code: str
    message: str
    event_type: str | None = None


@dataclass(frozen=True)
class StateChange:
    """GaState fields to set once the session has accepted the update that carries them."""

    changes: Mapping[str, Any]


Action = cmd.Command | Pcm16 | Ack | Fail | StateChange


class GaDecoder:
    def __init__(self, state: GaState) -> None:
        self.state = state

    def decode(self, raw: str) -> list[Action]:
        try:
            message = strict_loads(raw)
        except ProtocolError as exc:
            return [Fail(exc.code, exc.message)]
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return [Fail("invalid_event", "a client event is a JSON object with a string 'type'")]
        kind = message["type"][:64]
        if isinstance(message.get("event_id"), str):
            self.state.client_event_ids.append((kind, message["event_id"][:64]))
        handler = _HANDLERS.get(kind)
        if handler is None:
            return [Fail("unknown_event", f"unsupported event type {kind!r} (docs/protocol.md lists what is)", kind)]
        try:
            return handler(self, message)
        except ProtocolError as exc:
            return [Fail(exc.code, exc.message, exc.event_type or kind)]

    def _session_update(self, message: Mapping[str, Any]) -> list[Action]:
        ours, changes = session_fields(message.get("session"), self.state)
        return [StateChange(changes), cmd.UpdateSession(ours)]

    def _append(self, message: Mapping[str, Any]) -> list[Action]:
        audio = message.get("audio")
        if not isinstance(audio, str):
            raise ProtocolError("invalid_event", "'audio' must be a base64 string")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("invalid_event", "'audio' is not valid base64") from None
        fmt = self.state.input_format
        if fmt == PCMU:
            data = mulaw_to_pcm16(data)
        elif fmt == PCMA:
            data = alaw_to_pcm16(data)
        elif len(data) % 2:
            raise ProtocolError("invalid_audio_frame", f"{len(data)} bytes are not whole 16-bit samples")
        step = FORMAT_RATES_HZ[fmt] * 2 * FRAME_MS // 1000
        return [Pcm16(data[start:start + step]) for start in range(0, len(data), step)]

    def _item_create(self, message: Mapping[str, Any]) -> list[Action]:
        item = message.get("item")
        if not isinstance(item, Mapping):
            raise ProtocolError("invalid_event", "'item' must be an object")
        item_id = item.get("id") if isinstance(item.get("id"), str) else self.state.new_item_id()
        previous, self.state.last_item_id = self.state.last_item_id, item_id
        if item.get("type") == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id or not isinstance(output, str):
                raise ProtocolError("invalid_event", "a function_call_output needs call_id and output (strings)")
            added = {"id": item_id, "type": "function_call_output", "object": "realtime.item", "status": "completed",
                     "call_id": call_id, "output": output}
            return [cmd.ToolOutput(call_id, output), Ack(EventKind.ITEM_ADDED, {"item": added, "previous_item_id": previous})]
        if item.get("type", "message") != "message" or item.get("role") != "user":
            raise ProtocolError("invalid_event", "supported items: user messages with input_text, and function_call_output")
        content = item.get("content")
        parts = content if isinstance(content, list) else []
        texts = [p["text"] for p in parts
                 if isinstance(p, Mapping) and p.get("type") == "input_text" and isinstance(p.get("text"), str)]
        if not parts or len(texts) != len(parts):
            raise ProtocolError("invalid_event", "a user message needs input_text parts (audio and images are not supported)")
        text = " ".join(texts).strip()[:_MAX_TEXT_CHARS]
        if not text:
            raise ProtocolError("invalid_event", "the message has no text")
        self.state.pending_texts.append(text)
        added = {"id": item_id, "type": "message", "object": "realtime.item", "status": "completed", "role": "user",
                 "content": [{"type": "input_text", "text": text}]}
        return [Ack(EventKind.ITEM_ADDED, {"item": added, "previous_item_id": previous})]

    def _truncate(self, message: Mapping[str, Any]) -> list[Action]:
        item_id, end_ms = message.get("item_id"), message.get("audio_end_ms")
        if (not isinstance(item_id, str) or not isinstance(end_ms, (int, float)) or isinstance(end_ms, bool)
                or not 0 <= end_ms <= MAX_AUDIO_END_MS):
            raise ProtocolError("invalid_event", "expected item_id (string) and audio_end_ms (0 to 86400000 ms)")
        response_id = self.state.response_items.get(item_id)
        if response_id is None or response_id != self.state.latest_response_id:
            raise ProtocolError("item_truncate_invalid_item_id", f"item {item_id[:64]!r} is not the latest assistant message")
        ack = {"item_id": item_id, "content_index": message.get("content_index", 0), "audio_end_ms": int(end_ms)}
        return [cmd.TruncateReply(response_id, float(end_ms)), Ack(EventKind.ITEM_TRUNCATED, ack)]

    def _response_create(self, _message: Mapping[str, Any]) -> list[Action]:
        if not self.state.pending_texts:
            return [cmd.CreateResponse()]
        text = " ".join(self.state.pending_texts)
        self.state.pending_texts.clear()
        return [cmd.UserText(text)]


_HANDLERS: dict[str, Callable[[GaDecoder, Mapping[str, Any]], list[Action]]] = {
    "session.update": GaDecoder._session_update,
    "input_audio_buffer.append": GaDecoder._append,
    "input_audio_buffer.commit": lambda self, m: [cmd.CommitInput()],
    "input_audio_buffer.clear": lambda self, m: [cmd.ClearInput(), Ack(EventKind.INPUT_CLEARED)],
    "conversation.item.create": GaDecoder._item_create,
    "conversation.item.truncate": GaDecoder._truncate,
    "response.create": GaDecoder._response_create,
    "response.cancel": lambda self, m: [cmd.CancelResponse()],
    "output_audio_buffer.clear": lambda self, m: [cmd.CancelResponse()],
}
