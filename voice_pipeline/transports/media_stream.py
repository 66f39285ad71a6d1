"""Media-stream calls (Twilio Media Streams, Telnyx media streaming): one WebSocket, one Session.

The provider's JSON goes through `telephony.bridge.MediaStreamCall` (one codec per provider):
caller audio to the session at 16 kHz, reply audio back as 20 ms `media` messages with a `mark`
every `telephony.mark_interval_ms`, and `clear` as soon as the session clears its output.
The marks the provider echoes tell how much of a cleared reply the caller heard; the session's
history is cut there (`TruncateReply`).

Transfer to a person needs the provider's REST API (Twilio: update the call with new TwiML
`<Dial>`; Telnyx: the `transfer` call-control action) with account credentials; this endpoint
does not do it: `escalate` logs the request and returns False.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import WSMsgType, web

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.bridge import CallEnded, CallerAudio, CallerDtmf, CallStarted, MediaStreamCall
from voice_pipeline.telephony.media_streams import codec_for
from voice_pipeline.telephony.phone_audio import PHONE_RATE_HZ
from voice_pipeline.transports.phone import PhoneSink, on_dtmf, phone_session, refusal

if TYPE_CHECKING:
    from voice_pipeline.server import PipelineServer
    from voice_pipeline.session import Session

log = logging.getLogger("voice_pipeline.telephony")
MAX_MESSAGE_BYTES = 64 * 1024  # a 20 ms media message is ~300 bytes; start messages are small too


class MediaStreamLine:
    """Reply audio to the provider as `media` + `mark` messages; `clear` on barge-in."""

    def __init__(self, ws: web.WebSocketResponse, call: MediaStreamCall) -> None:
        self.ws, self.call = ws, call
        self._reply_id: str | None = None

    async def reply_started(self, response_id: str) -> None:
        self._reply_id = response_id
        self.call.start_reply(response_id)

    async def reply_audio(self, samples: np.ndarray) -> None:
        await self._send(self.call.reply_audio(samples))

    async def reply_ended(self) -> None:
        await self._send(self.call.end_reply())

    async def reply_cleared(self, response_id: str) -> float:
        messages, position = self.call.barge_in()
        await self._send(messages)
        return position.heard_ms if response_id == self._reply_id else 0.0  # else none of it was sent

    async def _send(self, messages: list[str]) -> None:
        for message in messages:
            await self.ws.send_str(message)


class MediaStreamHandler:
    """One provider WebSocket: waits for `start`, then runs a Session until `stop` or a close."""

    def __init__(self, server: PipelineServer, ws: web.WebSocketResponse, provider: str) -> None:
        self.server, self.ws, self.provider = server, ws, provider
        telephony = server.settings.telephony
        self.call = MediaStreamCall(codec_for(provider), tts_rate_hz=PHONE_RATE_HZ,
                                    mark_every_ms=float(telephony.mark_interval_ms))
        self.label = provider
        self.session: Session | None = None

    async def run(self) -> None:
        started = await self._wait_for_start()
        if started is None:
            return
        line = MediaStreamLine(self.ws, self.call)
        async with phone_session(self.server, f"{self.provider}-",
                                 lambda session: PhoneSink(line, session, self.escalate)) as (session, runner):
            self.session, self.label = session, session.session_id
            log.info("call %s started (%s call %s)", self.label, self.provider, started.call_id)
            reason = await self._relay(session, runner)
            log.info("call %s ended: %s", self.label, reason)

    def escalate(self, reason: str) -> bool:
        log.warning("call %s: escalation (%s) asked; a %s transfer needs its REST API, not done here",
                    self.label, reason, self.provider)
        return False

    async def _wait_for_start(self) -> CallStarted | None:
        async for message in self.ws:
            for event in self._decode(message):
                if isinstance(event, CallStarted):
                    return event
                if isinstance(event, CallEnded):
                    return None
        return None

    async def _relay(self, session: Session, runner) -> str:
        telephony, server = self.server.settings.telephony, self.server.settings.server
        async for message in self.ws:
            if runner.done():
                return "session stopped"
            for event in self._decode(message):
                match event:
                    case CallerAudio(audio=audio):
                        session.feed_samples(audio)
                    case CallerDtmf(digit=digit):
                        on_dtmf(self, digit, telephony.transfer_digit, server.log_transcripts)
                    case CallEnded(reason=reason):
                        return reason
        return "socket closed"

    def _decode(self, message) -> list:
        """Provider events in one WebSocket message; a malformed one is counted, logged and skipped."""
        if message.type != WSMsgType.TEXT:
            return []
        try:
            return self.call.receive(message.data)
        except ProtocolError as exc:
            self.server.metrics.errors.labels(exc.code).inc()
            log.info("call %s: bad %s message: %s", self.label, self.provider, exc.code)
            return []


async def media_stream_endpoint(server: PipelineServer, request: web.Request, provider: str,
                                calls: set[MediaStreamHandler]) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0)
    await ws.prepare(request)
    code = refusal(server)
    if code is not None:
        server.metrics.errors.labels(code).inc()
        log.info("%s call refused: %s", provider, code)
        await ws.close(code=1013, message=code.encode())
        return ws
    handler = MediaStreamHandler(server, ws, provider)
    calls.add(handler)
    try:
        await handler.run()
    finally:
        calls.discard(handler)
    return ws
