"""One OpenAI Realtime (GA) connection on /v1/realtime: its sink, its session start and its messages.

The server picks this per connection (`wants_ga`: a `model` query parameter or the `realtime`
subprotocol); our own clients keep the v1 protocol on the same path. The translation itself is
pure and lives in protocol/openai_realtime/; this file only does the socket and session calls.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import WSMsgType, web

from voice_pipeline.protocol import commands as cmd
from voice_pipeline.protocol.events import AudioChunk, ServerEvent
from voice_pipeline.protocol.openai_realtime import SUBPROTOCOL, Ack, Fail, GaDecoder, GaEncoder, GaState, Pcm16, wants_ga
from voice_pipeline.protocol.openai_realtime.client_events import StateChange
from voice_pipeline.protocol.openai_realtime.state import FORMAT_RATES_HZ
from voice_pipeline.session.session import Session

_START = {"input_audio_format": {"encoding": "pcm16", "sample_rate": FORMAT_RATES_HZ["audio/pcm"]},
          "output_audio_format": {"encoding": "pcm16", "sample_rate": FORMAT_RATES_HZ["audio/pcm"]}}


class GaSink:
    """The session's events and audio as GA JSON text frames (audio as base64 deltas, never binary)."""

    def __init__(self, ws: web.WebSocketResponse, encoder: GaEncoder) -> None:
        self._ws, self._encoder = ws, encoder

    async def send_event(self, event: ServerEvent) -> None:
        for wire in self._encoder.encode_event(event):
            await self._ws.send_str(json.dumps(wire, separators=(",", ":")))

    async def send_audio(self, chunk: AudioChunk) -> None:
        for wire in self._encoder.encode_audio(chunk):
            await self._ws.send_str(json.dumps(wire, separators=(",", ":")))


class GaConnection:
    protocols = (SUBPROTOCOL,)

    def __init__(self, model: str | None) -> None:
        self.state = GaState(model=model or GaState.model)
        self.decoder, self.encoder = GaDecoder(self.state), GaEncoder(self.state)
        self._pending: dict[str, Any] = {}  # GaState changes of the session.update being handled

    @classmethod
    def for_request(cls, request: web.Request) -> "GaConnection | None":
        return cls(request.query.get("model")) if wants_ga(request.query, request.headers) else None

    def sink(self, ws: web.WebSocketResponse) -> GaSink:
        return GaSink(ws, self.encoder)

    async def start(self, session: Session) -> None:
        """A GA session starts on connect, with 24 kHz PCM both ways: `session.created` goes out now."""
        await session.handle(cmd.StartSession(_START))

    async def on_message(self, session: Session, message: Any) -> None:
        if message.type == WSMsgType.BINARY:  # our extension: raw PCM16 at the input rate
            return session.feed_pcm16(message.data)
        if message.type != WSMsgType.TEXT:
            return
        for action in self.decoder.decode(message.data):
            await self._do(session, action)

    async def _do(self, session: Session, action: Any) -> None:
        match action:
            case Pcm16(data):
                session.feed_pcm16(data)
            case Fail(code, text, event_type):
                session.error(code, text, event_type=event_type)
            case Ack(kind, data):
                session.outbox.emit(ServerEvent(kind, session.session_id, data=data))
            case StateChange(changes):
                self._pending = dict(changes)
            case cmd.UpdateSession():
                await self._update(session, action)
            case _:
                await session.handle(action)

    async def _update(self, session: Session, update: cmd.UpdateSession) -> None:
        """Apply the GA-only settings (formats, echo values) only if the session took the update."""
        changes, self._pending = self._pending, {}
        saved = {key: getattr(self.state, key) for key in changes}
        for key, value in changes.items():
            setattr(self.state, key, value)
        before = session.config
        await session.handle(update)
        if session.config is before:  # refused (an error went out): keep the previous GA settings
            for key, value in saved.items():
                setattr(self.state, key, value)
