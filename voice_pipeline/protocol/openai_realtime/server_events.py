"""The session's events and reply audio -> GA server events (JSON objects), for one connection.

Stateful: each reply becomes a GA response with an assistant message item (audio with its
transcript, or text) and one function_call item per tool call; the item-level `.done` events
and `response.done` (with usage) come when the reply ends. Our extensions (`turn.metrics`,
`output_audio_buffer.started/stopped/cleared`, `conversation.escalation`, `conversation.reset.done`)
pass through; `output_audio_buffer.paused/resumed` have no GA counterpart and are not sent (a GA
client keeps playing over a backchannel and learns of a barge-in from the clear).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from voice_pipeline.audio import float_to_pcm16
from voice_pipeline.protocol.events import AudioChunk, EventKind, ServerEvent
from voice_pipeline.protocol.openai_realtime.g711 import pcm16_to_alaw, pcm16_to_mulaw
from voice_pipeline.protocol.openai_realtime.session_map import ga_session
from voice_pipeline.protocol.openai_realtime.state import PCMA, PCMU, GaState

Wire = dict[str, Any]
_SERVER_ERRORS = {"stage_failed", "internal_error", "server_busy", "not_ready", "server_draining"}
_CANCEL_REASONS = {"barge_in": "turn_detected", "cancelled_by_client": "client_cancelled"}


@dataclass
class _Response:
    ga_id: str
    item_id: str
    text_mode: bool
    tokens: int = 0
    text: str = ""
    calls: list[Wire] = field(default_factory=list)
    cancel_reason: str | None = None


class GaEncoder:
    def __init__(self, state: GaState) -> None:
        self.state = state
        self._responses: dict[str, _Response] = {}
        self._partials: dict[str, str] = {}  # turn id -> transcript sent as deltas so far
        self._turn_audio_ms: dict[str, list[float]] = {}
        self._handlers: dict[EventKind, Callable[[ServerEvent], list[Wire]]] = {
            EventKind.SESSION_CREATED: self._session, EventKind.SESSION_UPDATED: self._session,
            EventKind.SPEECH_STARTED: self._speech_started, EventKind.SPEECH_STOPPED: self._speech_stopped,
            EventKind.INPUT_COMMITTED: self._committed, EventKind.TRANSCRIPT_PARTIAL: self._partial,
            EventKind.TRANSCRIPT_FINAL: self._transcript, EventKind.RESPONSE_CREATED: self._response_created,
            EventKind.RESPONSE_TEXT_DELTA: self._text_delta, EventKind.RESPONSE_TEXT_DONE: lambda e: [],
            EventKind.FUNCTION_CALL: self._function_call, EventKind.RESPONSE_DONE: self._response_done,
            EventKind.ERROR: self._error, EventKind.ITEM_ADDED: self._item_added,
            EventKind.OUTPUT_AUDIO_CLEARED: self._cleared,
            EventKind.OUTPUT_AUDIO_PAUSED: lambda e: [], EventKind.OUTPUT_AUDIO_RESUMED: lambda e: [],
        }

    def encode_event(self, event: ServerEvent) -> list[Wire]:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            return [{"type": wire.pop("type"), "event_id": f"{event.event_id}_{index}", **wire}
                    for index, wire in enumerate(handler(event))]
        wire: Wire = {"type": event.kind.value, "event_id": event.event_id, **event.data}
        if event.response_id is not None:  # pass-through (ours, or GA names without a GA payload to build)
            wire["response_id"] = self._ga_response_id(event.response_id)
        if event.turn_id is not None:
            wire["turn_id"] = event.turn_id
        return [wire]

    def encode_audio(self, chunk: AudioChunk) -> list[Wire]:
        response = self._responses.get(chunk.response_id)
        if response is None or response.text_mode:  # text only: cached phrases are not sent either
            return []
        pcm16 = float_to_pcm16(chunk.samples)
        fmt = self.state.output_format
        if fmt in (PCMU, PCMA):
            samples = np.frombuffer(pcm16, dtype="<i2")
            pcm16 = pcm16_to_mulaw(samples) if fmt == PCMU else pcm16_to_alaw(samples)
        return [{"type": "response.output_audio.delta", "event_id": f"a_{response.item_id}_{id(chunk)}",
                 **self._content(response), "delta": base64.b64encode(pcm16).decode()}]

    # -- session and input ----------------------------------------------------------------------

    def _session(self, event: ServerEvent) -> list[Wire]:
        self.state.output_text_only = list(event.data.get("session", {}).get("output_modalities", [])) == ["text"]
        wire = {"type": event.kind.value, "session": ga_session(event.data.get("session", {}), self.state, event.session_id)}
        if "limits" in event.data:
            wire["limits"] = event.data["limits"]  # an extension: the server's frame and queue limits
        return [wire]

    def _user_item(self, turn_id: str | None) -> str:
        return f"item_{turn_id}"

    def _speech_started(self, event: ServerEvent) -> list[Wire]:
        start_ms = float(event.data.get("audio_start_ms", 0))
        self._turn_audio_ms[event.turn_id or ""] = [start_ms, start_ms]
        return [{"type": event.kind.value, "audio_start_ms": int(start_ms), "item_id": self._user_item(event.turn_id)}]

    def _speech_stopped(self, event: ServerEvent) -> list[Wire]:
        end_ms = float(event.data.get("audio_end_ms", 0))
        self._turn_audio_ms.setdefault(event.turn_id or "", [end_ms, end_ms])[1] = end_ms
        return [{"type": event.kind.value, "audio_end_ms": int(end_ms), "item_id": self._user_item(event.turn_id)}]

    def _committed(self, event: ServerEvent) -> list[Wire]:
        item_id = self._user_item(event.turn_id)
        previous, self.state.last_item_id = self.state.last_item_id, item_id
        item = {"id": item_id, "type": "message", "object": "realtime.item", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        return [{"type": event.kind.value, "item_id": item_id, "previous_item_id": previous},
                {"type": "conversation.item.added", "item": item, "previous_item_id": previous}]

    def _partial(self, event: ServerEvent) -> list[Wire]:
        turn_id, text = event.turn_id or "", str(event.data.get("transcript", ""))
        sent = self._partials.get(turn_id, "")
        if self.state.transcription is None or not text.startswith(sent) or text == sent:
            return []  # a delta cannot take words back: a revised hypothesis waits for `completed`
        self._partials[turn_id] = text
        return [{"type": "conversation.item.input_audio_transcription.delta", "item_id": self._user_item(turn_id),
                 "content_index": 0, "delta": text[len(sent):]}]

    def _transcript(self, event: ServerEvent) -> list[Wire]:
        turn_id, text = event.turn_id or "", str(event.data.get("transcript", ""))
        self._partials.pop(turn_id, None)
        start_ms, end_ms = self._turn_audio_ms.pop(turn_id, [0.0, 0.0])
        if self.state.transcription is None:
            return []
        item_id = self._user_item(turn_id)
        item = {"id": item_id, "type": "message", "object": "realtime.item", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": text}]}
        usage = {"type": "duration", "seconds": round(max(0.0, end_ms - start_ms) / 1000.0, 3)}
        return [{"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id, "content_index": 0,
                 "transcript": text, "usage": usage},
                {"type": "conversation.item.done", "item": item, "previous_item_id": None}]

    def _item_added(self, event: ServerEvent) -> list[Wire]:
        item, previous = event.data.get("item"), event.data.get("previous_item_id")
        return [{"type": "conversation.item.added", "item": item, "previous_item_id": previous},
                {"type": "conversation.item.done", "item": item, "previous_item_id": previous}]

    # -- responses ------------------------------------------------------------------------------

    def _ga_response_id(self, response_id: str) -> str:
        response = self._responses.get(response_id)
        return response.ga_id if response is not None else f"resp_{response_id}"

    def _content(self, response: _Response) -> Wire:
        return {"response_id": response.ga_id, "item_id": response.item_id, "output_index": 0, "content_index": 0}

    def _message(self, response: _Response, status: str) -> Wire:
        part = ({"type": "output_text", "text": response.text} if response.text_mode
                else {"type": "output_audio", "transcript": response.text})
        return {"id": response.item_id, "type": "message", "object": "realtime.item", "status": status,
                "role": "assistant", "content": [part] if status != "in_progress" else []}

    def _response(self, response: _Response, status: str, **more: Any) -> Wire:
        return {"id": response.ga_id, "object": "realtime.response", "status": status, "conversation_id": "conv_1",
                "output_modalities": ["text"] if response.text_mode else ["audio"], "max_output_tokens": "inf",
                "metadata": None, "status_details": None, "usage": None, **more}

    def _response_created(self, event: ServerEvent) -> list[Wire]:
        rid = event.response_id or ""
        response = _Response(f"resp_{rid}", f"item_{rid}", self.state.output_text_only)
        self._responses[rid] = response
        self.state.response_items[response.item_id] = rid
        self.state.latest_response_id = rid
        previous, self.state.last_item_id = self.state.last_item_id, response.item_id
        part = {"type": "text", "text": ""} if response.text_mode else {"type": "audio", "transcript": ""}
        item = self._message(response, "in_progress")
        return [{"type": "response.created", "response": self._response(response, "in_progress", output=[])},
                {"type": "response.output_item.added", "response_id": response.ga_id, "output_index": 0, "item": item},
                {"type": "conversation.item.added", "item": item, "previous_item_id": previous},
                {"type": "response.content_part.added", **self._content(response), "part": part}]

    def _text_delta(self, event: ServerEvent) -> list[Wire]:
        response = self._responses.get(event.response_id or "")
        if response is None:
            return []
        delta = str(event.data.get("delta", ""))
        response.tokens += 1
        response.text += delta
        kind = "response.output_text.delta" if response.text_mode else "response.output_audio_transcript.delta"
        return [{"type": kind, **self._content(response), "delta": delta}]

    def _function_call(self, event: ServerEvent) -> list[Wire]:
        response = self._responses.get(event.response_id or "")
        if response is None:
            return []
        index = 1 + len(response.calls)
        call_id, name, arguments = (str(event.data.get(key, "")) for key in ("call_id", "name", "arguments"))
        item_id = f"{response.item_id}_fc{index}"
        item = {"id": item_id, "type": "function_call", "object": "realtime.item", "call_id": call_id, "name": name}
        done = {**item, "status": "completed", "arguments": arguments}
        response.calls.append(done)
        where = {"response_id": response.ga_id, "item_id": item_id, "output_index": index, "call_id": call_id}
        return [{"type": "response.output_item.added", "response_id": response.ga_id, "output_index": index,
                 "item": {**item, "status": "in_progress", "arguments": ""}},
                {"type": "conversation.item.added", "item": {**item, "status": "in_progress", "arguments": ""}},
                {"type": "response.function_call_arguments.delta", **where, "delta": arguments},
                {"type": "response.function_call_arguments.done", **where, "name": name, "arguments": arguments},
                {"type": "response.output_item.done", "response_id": response.ga_id, "output_index": index, "item": done},
                {"type": "conversation.item.done", "item": done}]

    def _cleared(self, event: ServerEvent) -> list[Wire]:
        response = self._responses.get(event.response_id or "")
        if response is not None:
            response.cancel_reason = _CANCEL_REASONS.get(str(event.data.get("reason")), "client_cancelled")
        return [{"type": "output_audio_buffer.cleared", "response_id": self._ga_response_id(event.response_id or "")}]

    def _response_done(self, event: ServerEvent) -> list[Wire]:
        response = self._responses.pop(event.response_id or "", None)
        if response is None:
            return []
        status = str(event.data.get("status", "completed"))
        text = str(event.data.get("text", response.text))
        response.text = text
        item_status = "completed" if status == "completed" else "incomplete"
        content = self._content(response)
        if response.text_mode:
            ends = [{"type": "response.output_text.done", **content, "text": text}]
            part = {"type": "text", "text": text}
        else:
            ends = [{"type": "response.output_audio.done", **content},
                    {"type": "response.output_audio_transcript.done", **content, "transcript": text}]
            part = {"type": "audio", "transcript": text}
        message = self._message(response, item_status)
        details: Wire | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": response.cancel_reason or "client_cancelled"}
        elif status == "failed":
            details = {"type": "failed", "error": {"type": "server_error", "code": "stage_failed"}}
        usage = {"total_tokens": response.tokens, "input_tokens": 0, "output_tokens": response.tokens,
                 "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
                 "output_token_details": {"text_tokens": response.tokens, "audio_tokens": 0}}
        done = self._response(response, status, output=[message, *response.calls], status_details=details, usage=usage)
        return [*ends, {"type": "response.content_part.done", **content, "part": part},
                {"type": "response.output_item.done", "response_id": response.ga_id, "output_index": 0, "item": message},
                {"type": "conversation.item.done", "item": message},
                {"type": "response.done", "response": done}]

    def _error(self, event: ServerEvent) -> list[Wire]:
        error = event.data.get("error", {})
        code = str(error.get("code", "internal_error"))
        event_type = error.get("event_type")
        return [{"type": "error", "error": {
            "type": "server_error" if code in _SERVER_ERRORS else "invalid_request_error", "code": code,
            "message": str(error.get("message", "")), "param": None,
            "event_id": self.state.client_event_id(event_type) if event_type else None}}]
