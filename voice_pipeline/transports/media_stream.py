"""Media-stream calls (Twilio Media Streams, Telnyx media streaming): one WebSocket, one Session.

The provider's JSON goes through `telephony.bridge.MediaStreamCall` (one codec per provider):
caller audio to the session at 16 kHz, reply audio back as 20 ms `media` messages with a `mark`
every `telephony.mark_interval_ms`, and `clear` as soon as the session clears its output.
The marks the provider echoes tell how much of a cleared reply the caller heard; the session's
history is cut there (`TruncateReply`).

Limits: a socket is refused (1013) when the server is full or not ready, both when it connects
and when its `start` arrives (the session begins then), and when `telephony.max_pending_streams`
sockets are already waiting for their `start`; one that sends no `start` within
`telephony.start_timeout_s` is closed (1008). Each refusal is counted in `errors` by its code.

Transfer to a person needs the provider's REST API (Twilio: update the call with new TwiML
`<Dial>`; Telnyx: the `transfer` call-control action) with account credentials; this endpoint
does not do it: `escalate` logs the request and returns False.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.bridge import CallEnded, CallerAudio, CallerDtmf, CallStarted, MediaStreamCall
from voice_pipeline.telephony.media_streams import MAX_MESSAGE_CHARS, codec_for
from voice_pipeline.telephony.phone_audio import PHONE_RATE_HZ
from voice_pipeline.transports.phone import PHONE_SESSION_CONFIG, PhoneSink, on_dtmf

if TYPE_CHECKING:
    from voice_pipeline.app.host import SessionHost
    from voice_pipeline.session.session import Session

log = logging.getLogger("voice_pipeline.telephony")
MAX_MESSAGE_BYTES = MAX_MESSAGE_CHARS  # aiohttp closes a socket (1009) that sends a bigger frame
BUSY_CLOSE_CODE = 1013  # "try again later": the server is full, still loading, or has too many pending
POLICY_CLOSE_CODE = 1008  # the socket broke the protocol's rules: no `start` in time
MAX_LOGGED_FAULTS = 10  # per call; later bad messages are only counted
T = TypeVar("T")


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
    """One provider WebSocket: waits for `start`, then runs a Session until `stop` or a close.

    Each message goes through a fault barrier (`_guarded`): a malformed one, or a bug met while
    handling one, is counted in `errors` and logged without its content, and the call goes on.
    """

    def __init__(self, host: SessionHost, ws: web.WebSocketResponse, provider: str) -> None:
        self.host, self.ws, self.provider = host, ws, provider
        telephony = host.settings.telephony
        self.call = MediaStreamCall(codec_for(provider), tts_rate_hz=PHONE_RATE_HZ,
                                    mark_every_ms=float(telephony.mark_interval_ms))
        self.label = provider
        self.session: Session | None = None
        self.pending = True  # no `start` yet: counts against telephony.max_pending_streams
        self._logged_faults = 0

    async def run(self) -> None:
        try:
            started = await self._wait_for_start()
        finally:
            self.pending = False
        if started is None:
            return
        code = self.host.refusal()  # again now: a session begins here, not when the socket opened
        if code is not None:
            await refuse(self.host, self.ws, self.provider, code, BUSY_CLOSE_CODE)
            return
        line = MediaStreamLine(self.ws, self.call)
        async with self.host.session(f"{self.provider}-", lambda session: PhoneSink(line, session, self.escalate),
                                     start=PHONE_SESSION_CONFIG) as (session, runner):
            self.session, self.label = session, session.session_id
            log.info("call %s started (%s call %s)", self.label, self.provider, started.call_id)
            reason = await self._relay(session, runner)
            log.info("call %s ended: %s", self.label, reason)

    def escalate(self, reason: str) -> bool:
        log.warning("call %s: escalation (%s) asked; a %s transfer needs its REST API, not done here",
                    self.label, reason, self.provider)
        return False

    async def _wait_for_start(self) -> CallStarted | None:
        """The call's `start`; None if the socket ends first or sends none within the start timeout."""
        try:
            async with asyncio.timeout(self.host.settings.telephony.start_timeout_s):
                async for message in self.ws:
                    event = self._guarded(self._before_start, message)
                    if event is not None:
                        return event if isinstance(event, CallStarted) else None
        except TimeoutError:
            await refuse(self.host, self.ws, self.provider, "start_timeout", POLICY_CLOSE_CODE)
        return None

    def _before_start(self, message) -> CallStarted | CallEnded | None:
        for event in self.call.receive(_text_of(message)):
            if isinstance(event, CallStarted | CallEnded):
                return event
        return None

    async def _relay(self, session: Session, runner) -> str:
        async for message in self.ws:
            if runner.done():
                return "session stopped"
            reason = self._guarded(self._apply, message, session)
            if reason is not None:
                return reason
        return "socket closed"

    def _apply(self, message, session: Session) -> str | None:
        """One provider message applied to the call; the reason if it ended the call."""
        telephony, server = self.host.settings.telephony, self.host.settings.server
        for event in self.call.receive(_text_of(message)):
            match event:
                case CallerAudio(audio=audio):
                    session.feed_samples(audio)
                case CallerDtmf(digit=digit):
                    on_dtmf(self, digit, telephony.transfer_digit, server.log_transcripts)
                case CallEnded(reason=reason):
                    return reason
        return None

    def _guarded(self, step: Callable[..., T], *args) -> T | None:
        """Fault barrier: what one message breaks is counted and logged, never its content; None then."""
        try:
            return step(*args)
        except ProtocolError as exc:
            self._fault(exc.code, logging.INFO, "bad %s message: %s", self.provider, exc.code)
        except Exception as exc:  # a bug, not the provider's: say where, keep the call
            self._fault("internal_error", logging.WARNING, "internal_error: %s handling a %s message%s",
                        type(exc).__name__, self.provider, _where(exc))
        return None

    def _fault(self, code: str, level: int, text: str, *args) -> None:
        """Count every fault; log the first few of a call (a flood of bad messages must not flood the log)."""
        self.host.metrics.errors.labels(code).inc()
        self._logged_faults += 1
        if self._logged_faults <= MAX_LOGGED_FAULTS:
            log.log(level, "call %s: " + text, self.label, *args)
        elif self._logged_faults == MAX_LOGGED_FAULTS + 1:
            log.info("call %s: more faults; counted in errors, no longer logged", self.label)


def _text_of(message) -> str:
    """A provider message's text; providers send only text frames, so anything else is a ProtocolError."""
    if message.type == WSMsgType.TEXT:
        return message.data
    if message.type == WSMsgType.BINARY:
        raise ProtocolError("binary_frame", "media-stream providers send text frames only")
    if getattr(message.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:  # aiohttp closes such a socket (1009)
        raise ProtocolError("message_too_large", f"a frame over {MAX_MESSAGE_BYTES} bytes")
    raise ProtocolError("websocket_error", f"WebSocket {message.type.name} frame")


def _where(exc: BaseException) -> str:
    """Where an exception was raised (file, line, function): enough to find a bug, no data in it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    code = tb.tb_frame.f_code
    return f" at {Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}"


async def refuse(host: SessionHost, ws: web.WebSocketResponse, provider: str, code: str,
                 close_code: int) -> None:
    """Turn a provider socket away: counted in `errors` by code, logged, closed with `close_code`."""
    host.metrics.errors.labels(code).inc()
    log.info("%s call refused: %s", provider, code)
    await ws.close(code=close_code, message=code.encode())


def pending_refusal(host: SessionHost, calls: set[MediaStreamHandler]) -> str | None:
    """`too_many_pending` when as many sockets as allowed are still waiting for their `start`."""
    pending = sum(1 for call in calls if call.pending)
    return "too_many_pending" if pending >= host.settings.telephony.max_pending_streams else None


async def media_stream_endpoint(host: SessionHost, request: web.Request, provider: str,
                                calls: set[MediaStreamHandler]) -> web.WebSocketResponse:
    """/v1/twilio and /v1/telnyx: one provider socket, refused at once when there is no room for it."""
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0)
    await ws.prepare(request)
    code = host.refusal() or pending_refusal(host, calls)  # checked again at `start`
    if code is not None:
        await refuse(host, ws, provider, code, BUSY_CLOSE_CODE)
        return ws
    handler = MediaStreamHandler(host, ws, provider)
    calls.add(handler)
    try:
        await handler.run()
    finally:
        calls.discard(handler)
    return ws
