"""A SIP user agent over UDP that answers calls and hands each one, with its RTP endpoint, to a handler.

Signalling (message parsing, transactions, dialogs, 100 Trying, BYE/CANCEL/OPTIONS answers, 2xx
retransmission, REFER) is aiosipua's; this module decides what to do with a call: answer with
our SDP, open its RTP endpoint, run the handler, and tidy up on BYE, CANCEL or a missing ACK.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable

from aiosipua import IncomingCall, SipRequest, SipUAC, SipUAS, parse_sdp
from aiosipua.transport import SipTransport

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.rtp_endpoint import RtpEndpoint
from voice_pipeline.telephony.sip.sdp import MediaPlan, answer_offer
from voice_pipeline.telephony.sip.transport import UdpTransport

log = logging.getLogger(__name__)

CallHandler = Callable[["SipCall"], Awaitable[None]]
MediaOpener = Callable[[], Awaitable[RtpEndpoint]]


@dataclass
class SipCall:
    """One answered call. `ended` is set when either side hangs up."""

    call_id: str
    caller: str
    callee: str
    plan: MediaPlan
    media: RtpEndpoint
    _incoming: IncomingCall = field(repr=False)
    _agent: SipAgent = field(repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    transfer_status: int | None = None  # last sipfrag status reported for a REFER (202 accepted, 200 done)

    def hangup(self) -> None:
        """Send BYE (if the call is still up) and stop its media."""
        if not self.ended.is_set():
            self._incoming.hangup()
        self._agent._finish(self)

    def transfer(self, target_uri: str) -> None:
        """Blind transfer (RFC 3515): ask the caller's phone to call `target_uri` instead."""
        if self._agent.uac is None:
            raise RuntimeError("SIP agent has no UAC to send REFER")
        self._agent.uac.send_refer(self._incoming.dialog, target_uri, self._incoming.source_addr)


class SipAgent:
    """Listens on `host:port` (UDP) and answers every INVITE whose offer carries PCMU.

    `advertised_host` is the address written into Contact and SDP (defaults to `host`; set it
    when binding 0.0.0.0). `ring_s` holds the call in 180 Ringing that long before answering.
    """

    def __init__(self, on_call: CallHandler, *, host: str = "127.0.0.1", port: int = 5060,
                 advertised_host: str | None = None, rtp_host: str | None = None, ring_s: float = 0.0,
                 user_agent: str = "voice-pipeline", rtp_options: dict[str, object] | None = None,
                 transport: SipTransport | None = None, open_media: MediaOpener | None = None) -> None:
        if host == "0.0.0.0" and advertised_host is None:
            raise ValueError("binding 0.0.0.0 needs an advertised_host for Contact and SDP")
        self.on_call = on_call
        self.host, self.port, self.ring_s = host, port, ring_s
        self.advertised_host = advertised_host or host
        self.rtp_host = rtp_host or host
        self.user_agent = user_agent
        self.rtp_options = dict(rtp_options or {})
        self.transport = transport or UdpTransport(local_addr=(host, port))
        self._open_media = open_media or self._open_rtp
        self.uac: SipUAC | None = None
        self.uas: SipUAS | None = None
        self.calls: dict[str, SipCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_ids = itertools.count(1)

    async def start(self) -> None:
        await self.transport.start()  # bind first: port 0 picks a free port
        self.port = self.transport.local_addr[1]
        advertised = (self.advertised_host, self.port)
        self.uac = SipUAC(self.transport, advertised_addr=advertised)
        self.uas = SipUAS(self.transport, user_agent=self.user_agent, uac=self.uac, advertised_addr=advertised)
        self.uas.on_invite = self._on_invite
        self.uas.on_bye = self._on_bye
        self.uas.on_cancel = self._on_cancel
        self.uas.on_ack_timeout = self._on_ack_timeout
        self.uas.on_transfer_progress = self._on_transfer_progress
        self.transport.on_message = self.uas._on_message

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            call.hangup()
        for task in list(self._tasks):
            if task.get_name().startswith("sip-answer-"):
                task.cancel()  # a handler's `finally` hangs up; media closes run to the end
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.uas is not None:
            await self.uas.stop()
        else:
            await self.transport.stop()

    @property
    def uri(self) -> str:
        return f"sip:assistant@{self.advertised_host}:{self.port}"

    # --- aiosipua callbacks (synchronous) ----------------------------------------------------

    def _on_invite(self, incoming: IncomingCall) -> None:
        self._spawn(self._answer(incoming), f"sip-answer-{incoming.call_id}")

    def _on_bye(self, incoming: IncomingCall, request: SipRequest) -> None:
        call = self.calls.get(incoming.call_id)
        if call is not None:
            log.info("sip call ended by caller", extra={"call_id": call.call_id})
            self._finish(call)

    def _on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        log.info("sip call cancelled before answer", extra={"call_id": request.call_id})

    def _on_ack_timeout(self, incoming: IncomingCall) -> None:
        call = self.calls.get(incoming.call_id)
        if call is not None:
            log.warning("sip call got no ACK; ending it", extra={"call_id": call.call_id})
            self._finish(call)

    def _on_transfer_progress(self, call_id: str, status: int, reason: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.transfer_status = status
            if status >= 200:  # the transfer is done (or failed): our leg is no longer needed on success
                log.info("sip transfer finished", extra={"call_id": call_id, "status": status})
                if status < 300:
                    call.hangup()

    # --- call handling ----------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_rtp(self) -> RtpEndpoint:
        return await RtpEndpoint.open(self.rtp_host, 0, **self.rtp_options)

    def _still_pending(self, incoming: IncomingCall) -> bool:
        return self.uas is not None and self.uas.get_call(incoming.call_id) is incoming

    async def _answer(self, incoming: IncomingCall) -> None:
        offer = incoming.invite.text if incoming.sdp_offer is not None else ""
        try:
            media = await self._open_media()
        except OSError as exc:
            log.error("sip call: no RTP port", extra={"call_id": incoming.call_id, "error": str(exc)})
            incoming.reject(503, "Service Unavailable")
            return
        try:
            answer, plan = answer_offer(offer, local_ip=self.advertised_host, rtp_port=media.local_port,
                                        session_id=str(next(self._session_ids)))
        except ProtocolError as exc:
            log.info("sip offer rejected", extra={"call_id": incoming.call_id, "reason": exc.message})
            incoming.reject(488, "Not Acceptable Here")
            await media.close()
            return
        media.remote_addr, media.dtmf_payload_type = plan.remote_rtp, plan.dtmf_payload_type
        if self.ring_s > 0:
            incoming.ringing()
            await asyncio.sleep(self.ring_s)
        if not self._still_pending(incoming):  # cancelled while ringing
            await media.close()
            return
        incoming.accept(parse_sdp(answer))
        call = SipCall(incoming.call_id, incoming.caller, incoming.callee, plan, media, incoming, self)
        self.calls[call.call_id] = call
        log.info("sip call answered", extra={"call_id": call.call_id})
        try:
            await self.on_call(call)
        except Exception:
            log.exception("sip call handler failed", extra={"call_id": call.call_id})
        finally:
            call.hangup()

    def _finish(self, call: SipCall) -> None:
        if self.calls.pop(call.call_id, None) is None and call.ended.is_set():
            return
        call.ended.set()
        self._spawn(call.media.close(), f"rtp-close-{call.call_id}")

