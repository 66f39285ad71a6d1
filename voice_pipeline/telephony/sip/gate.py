"""The SIP agent's front door and fault barrier: every datagram is screened and answered at most once per transaction.

In order, for each datagram: unparsable, unroutable (no usable Via) or without a Call-ID is
dropped; a request from a peer outside the allow-list gets 403 (its ACKs and responses are
dropped); a retransmission of a request already answered
gets the same response again (RFC 3261 17.2), without reaching aiosipua a second time; a broken
request gets its 4xx (`screen.check_request`); a new INVITE must be admitted (`admit_invite`:
busy, a Call-ID already in use); only then does aiosipua see the message. No exception leaves
`datagram_received`: each is counted and logged by type, never with the payload. Each drop or
rejection counts under its code (`faults`, and `on_fault` for the server's `vp_errors_total`);
the log shows the 1st, 2nd, 4th, 8th... of each code, so a flood cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from aiosipua import SipMessage, SipRequest, SipResponse

from voice_pipeline.telephony.sip.peers import PeerFilter
from voice_pipeline.telephony.sip.screen import Rejection, check_request, error_response, stamp_via
from voice_pipeline.telephony.sip.transport import GatedTransport

log = logging.getLogger(__name__)

Deliver = Callable[[SipRequest | SipResponse, tuple[str, int]], None]
AdmitInvite = Callable[[SipRequest], Rejection | None]
FORBIDDEN = Rejection(403, "Forbidden", code="sip_forbidden")
INTERNAL_ERROR = Rejection(500, "Server Internal Error", code="sip_internal")  # counted as the exception
TRANSACTION_S = 32.0  # 64*T1: how long a client may retransmit a request (RFC 3261 17.1.1.2)


def transaction_key(message: SipMessage) -> tuple[str, str, str]:
    """Call-ID, top Via branch and CSeq: the same for a request, its retransmissions and its responses."""
    vias = message.headers.get("via")
    branch = next((part.split("=", 1)[-1] for part in vias[0].split(";")[1:]
                   if part.strip().lower().startswith("branch=")), "") if vias else ""
    return message.call_id or "", branch.strip(), " ".join((message.headers.get_first("cseq") or "").split())


class ReplyCache:
    """The last response sent in each server transaction, kept `ttl_s`; at most `max_entries`, oldest out first."""

    def __init__(self, max_entries: int = 1024, ttl_s: float = TRANSACTION_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, SipResponse]] = OrderedDict()
        self.max_entries, self.ttl_s, self._clock = max_entries, ttl_s, clock

    def remember(self, response: SipResponse) -> None:
        key, now = transaction_key(response), self._clock()
        self._entries[key] = (now, response)
        self._entries.move_to_end(key)
        while self._entries and (len(self._entries) > self.max_entries
                                 or next(iter(self._entries.values()))[0] < now - self.ttl_s):
            self._entries.popitem(last=False)

    def get(self, request: SipRequest) -> SipResponse | None:
        entry = self._entries.get(transaction_key(request))
        return entry[1] if entry is not None and entry[0] >= self._clock() - self.ttl_s else None


class SipGate:
    """Screens each datagram for `deliver` (aiosipua), answers what it refuses, and catches every exception."""

    def __init__(self, transport: GatedTransport, deliver: Deliver, *, admit_invite: AdmitInvite,
                 peers: PeerFilter | None = None, user_agent: str | None = None,
                 on_fault: Callable[[str], None] | None = None) -> None:
        self.transport, self.deliver, self.admit_invite = transport, deliver, admit_invite
        self.peers = peers or PeerFilter()
        self.user_agent, self.on_fault = user_agent, on_fault
        self.replies = ReplyCache()
        self.faults: Counter[str] = Counter()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._datagram(data, addr)
        except Exception as exc:  # the barrier: a broken datagram must not take anything else down
            self.fault("sip_internal", addr, type(exc).__name__)

    def replied(self, response: SipResponse) -> None:
        self.replies.remember(response)

    def fault(self, code: str, addr: tuple[str, int] | None, detail: str) -> None:
        """Count a dropped or refused message (or a caught exception) under `code`, and log it, throttled."""
        self.faults[code] += 1
        count = self.faults[code]
        if count & (count - 1) == 0:
            log.warning("sip %s from %s: %s (%d so far)", code, addr[0] if addr else "-", detail, count)
        if self.on_fault is not None:
            self.on_fault(code)

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # a CRLF keep-alive (RFC 5626 4.4.1), or nothing
        try:
            message = SipMessage.parse(data)
        except Exception as exc:
            self.fault("sip_unparsable", addr, type(exc).__name__)
            return
        if isinstance(message, SipResponse):  # to our BYE, REFER
            self._deliver_response(message, addr)
        elif not message.call_id or not stamp_via(message, addr):
            self.fault("sip_unroutable", addr, "no Call-ID or no usable Via")
        elif not self.peers.allows(addr[0]):
            self._forbid(message, addr)
        elif message.method == "ACK":  # never answered, even when broken (RFC 3261 17.2.1)
            if (rejection := check_request(message, _request_line(data))) is None:
                self.deliver(message, addr)
            else:
                self.fault(rejection.code, addr, f"ACK dropped: {rejection.reason}")
        elif (cached := self.replies.get(message)) is not None:
            self.transport.send_reply(cached)  # a retransmission: the same answer, nothing new
        else:
            self._request(message, addr, _request_line(data))

    def _deliver_response(self, response: SipResponse, addr: tuple[str, int]) -> None:
        if self.peers.allows(addr[0]):
            self.deliver(response, addr)
        else:
            self.fault(FORBIDDEN.code, addr, "response from a peer outside telephony.sip_allowed_peers")

    def _forbid(self, request: SipRequest, addr: tuple[str, int]) -> None:
        if request.method == "ACK":
            self.fault(FORBIDDEN.code, addr, "ACK from a peer outside telephony.sip_allowed_peers")
        elif (cached := self.replies.get(request)) is not None:
            self.transport.send_reply(cached)
        else:
            self.reject(request, FORBIDDEN, addr)

    def _request(self, request: SipRequest, addr: tuple[str, int], request_line: str) -> None:
        rejection = check_request(request, request_line)
        if rejection is None and request.method == "INVITE":
            rejection = self.admit_invite(request)
        if rejection is not None:
            self.reject(request, rejection, addr)
            return
        try:
            self.deliver(request, addr)
        except Exception as exc:
            self.fault("sip_internal", addr, type(exc).__name__)
            if self.replies.get(request) is None:  # still owed an answer (counted once, just above)
                self.transport.send_reply(error_response(request, INTERNAL_ERROR, self.user_agent))

    def reject(self, request: SipRequest, rejection: Rejection, addr: tuple[str, int] | None) -> None:
        """Send `rejection` as the request's final response, and count it."""
        self.transport.send_reply(error_response(request, rejection, self.user_agent))
        self.fault(rejection.code, addr, f"{rejection.status} {rejection.reason}")


def _request_line(data: bytes) -> str:
    return data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
