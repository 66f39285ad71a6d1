"""A SIP user agent over UDP that answers calls and hands each one, with its RTP endpoint, to a handler.

Signalling (message parsing, transactions, dialogs, 100 Trying, BYE/CANCEL/OPTIONS answers, 2xx
retransmission, REFER) is aiosipua's, behind our gate (`gate.py`: peer allow-list, malformed
requests, retransmissions, the fault barrier). This module decides what to do with a call: admit
it or not (before anything is answered), answer with our SDP, open its RTP endpoint, run the
handler, and tidy up on BYE, CANCEL or a missing ACK. No task it starts ends with an unretrieved
exception: each is counted as a fault and logged by type.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable

from aiosipua import IncomingCall, SipRequest, SipResponse, SipUAC, SipUAS, parse_sdp
from aiosipua.dialog import DialogState

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.rtp_endpoint import RtpEndpoint
from voice_pipeline.telephony.sip.gate import SipGate
from voice_pipeline.telephony.sip.peers import PeerFilter
from voice_pipeline.telephony.sip.screen import Rejection
from voice_pipeline.telephony.sip.sdp import MediaPlan, answer_offer
from voice_pipeline.telephony.sip.transport import GatedTransport, UdpTransport

log = logging.getLogger(__name__)

CallHandler = Callable[["SipCall"], Awaitable[None]]
MediaOpener = Callable[[], Awaitable[RtpEndpoint]]
# Whether one more call can be taken, given how many are being answered now (admitted, their
# handler not yet started): None to take it, else the refusal (486 busy, 503 not ready).
Admission = Callable[[int], Rejection | None]


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
    """Listens on `host:port` (UDP) and answers every admitted INVITE whose offer carries PCMU.

    `advertised_host` is the address written into Contact and SDP (defaults to `host`; set it
    when binding 0.0.0.0). `ring_s` holds the call in 180 Ringing that long before answering.
    `peers` is who may call (default: loopback only); `admit` refuses calls beyond capacity;
    `on_fault` hears the code of every dropped or refused message and caught exception.
    """

    def __init__(self, on_call: CallHandler, *, host: str = "127.0.0.1", port: int = 5060,
                 advertised_host: str | None = None, rtp_host: str | None = None, ring_s: float = 0.0,
                 user_agent: str = "voice-pipeline", rtp_options: dict[str, object] | None = None,
                 transport: GatedTransport | None = None, open_media: MediaOpener | None = None,
                 peers: PeerFilter | None = None, admit: Admission | None = None,
                 on_fault: Callable[[str], None] | None = None) -> None:
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
        self.admit = admit
        self.answering = 0  # INVITEs admitted whose handler has not started yet
        self.gate = SipGate(self.transport, self._deliver, admit_invite=self._admit_invite, peers=peers,
                            user_agent=user_agent, on_fault=on_fault)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_ids = itertools.count(1)

    async def start(self) -> None:
        if not isinstance(self.transport, GatedTransport):
            raise TypeError("the SIP agent needs a GatedTransport: every datagram goes through its gate")
        aiosipua_log = logging.getLogger("aiosipua")
        if aiosipua_log.level == logging.NOTSET:  # it warns once per malformed datagram; the gate counts them
            aiosipua_log.setLevel(logging.ERROR)
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
        self.transport.on_datagram = self.gate.datagram_received
        self.transport.on_reply = self.gate.replied

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

    # --- the gate's hooks and aiosipua's callbacks (synchronous) -------------------------------

    def _deliver(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        assert self.uas is not None, "SIP agent not started"
        self.uas._on_message(message, addr)

    def _admit_invite(self, request: SipRequest) -> Rejection | None:
        """A new INVITE (no To tag, a fresh Call-ID) may start a call if `admit` agrees.

        A re-INVITE gets 488: we do not renegotiate, and the call goes on as it was (RFC 3261 14.2;
        aiosipua alone would leave it unanswered).
        """
        call_id = request.call_id or ""
        existing = self.uas.get_call(call_id) if self.uas is not None else None
        to = request.to_addr
        if to is not None and to.tag:
            if existing is None:
                return Rejection(481, "Call/Transaction Does Not Exist")
            return Rejection(488, "Not Acceptable Here", code="sip_reinvite_refused")
        if existing is not None or call_id in self.calls:
            return Rejection(482, "Loop Detected")  # the same Call-ID again, not a retransmission
        return self.admit(self.answering) if self.admit is not None else None

    def _on_invite(self, incoming: IncomingCall) -> None:
        self.answering += 1  # in the same step as the admission: a burst cannot overbook
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
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            kind = "-".join(task.get_name().split("-")[:2])  # the name less the call id
            self.gate.fault("sip_internal", None, f"{kind} task: {type(exc).__name__}")

    async def _open_rtp(self) -> RtpEndpoint:
        return await RtpEndpoint.open(self.rtp_host, 0, **self.rtp_options)

    def _still_pending(self, incoming: IncomingCall) -> bool:
        return self.uas is not None and self.uas.get_call(incoming.call_id) is incoming

    async def _answer(self, incoming: IncomingCall) -> None:
        try:
            call = await self._set_up(incoming)
        except Exception as exc:
            self.gate.fault("sip_internal", incoming.source_addr, f"call set-up: {type(exc).__name__}")
            if incoming.dialog.state is DialogState.EARLY and self._still_pending(incoming):
                incoming.reject(500, "Server Internal Error")
            call = None
        finally:
            self.answering -= 1  # the handler, if any, takes the place over without a pause
        if call is None:
            return
        try:
            await self.on_call(call)
        except Exception as exc:
            log.error("sip call handler failed: %s", type(exc).__name__, extra={"call_id": call.call_id})
        finally:
            call.hangup()

    async def _set_up(self, incoming: IncomingCall) -> SipCall | None:
        """Open RTP and answer 200 with our SDP; None when the call ended first or was refused."""
        try:
            media = await self._open_media()
        except OSError as exc:
            log.error("sip call: no RTP port", extra={"call_id": incoming.call_id, "error": str(exc)})
            incoming.reject(503, "Service Unavailable")
            return None
        try:
            return await self._answer_with(incoming, media)
        except BaseException:
            await media.close()
            raise

    async def _answer_with(self, incoming: IncomingCall, media: RtpEndpoint) -> SipCall | None:
        try:
            answer, plan = answer_offer(incoming.invite.text, local_ip=self.advertised_host,
                                        rtp_port=media.local_port, session_id=str(next(self._session_ids)))
        except ProtocolError as exc:  # the gate checked the offer already; kept as the last word
            log.info("sip offer rejected", extra={"call_id": incoming.call_id, "reason": exc.message})
            incoming.reject(488, "Not Acceptable Here")
            await media.close()
            return None
        media.remote_addr, media.dtmf_payload_type = plan.remote_rtp, plan.dtmf_payload_type
        media.allowed_hosts = frozenset({plan.remote_rtp[0], incoming.source_addr[0]})
        if self.ring_s > 0:
            incoming.ringing()
            await asyncio.sleep(self.ring_s)
        if not self._still_pending(incoming):  # cancelled while ringing
            await media.close()
            return None
        incoming.accept(parse_sdp(answer))
        call = SipCall(incoming.call_id, incoming.caller, incoming.callee, plan, media, incoming, self)
        self.calls[call.call_id] = call
        log.info("sip call answered", extra={"call_id": call.call_id})
        return call

    def _finish(self, call: SipCall) -> None:
        if self.calls.pop(call.call_id, None) is None and call.ended.is_set():
            return
        call.ended.set()
        call._incoming._stop_retransmissions()  # no 200 OK after the call is over
        if self.uas is not None:  # aiosipua forgets a call only on the caller's BYE: forget ours too
            self.uas._calls.pop(call.call_id, None)
        self._spawn(call.media.close(), f"rtp-close-{call.call_id}")

