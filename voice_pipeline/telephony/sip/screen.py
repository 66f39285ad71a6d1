"""What makes an incoming SIP request answerable, and which 4xx a broken one gets (pure: request in, verdict out).

aiosipua parses leniently and raises, or stays silent, on some broken requests (a CSeq that is
not a number, an SDP field that is not); the gate runs these checks first, so that anything that
reaches aiosipua is well formed, and anything else gets one proper error response:

- no usable Via or no Call-ID: nothing to route or match a response by, so the request is dropped;
- 505 for another SIP version; 400 for a method that is not an upper-case token, a missing From/To/CSeq, a CSeq that is
  not `number METHOD` (number below 2**31, METHOD the request's), a Content-Length that is not a
  number or is larger than the body (a truncated datagram, RFC 3261 18.3), an INVITE without Contact;
- 415 for an INVITE body that is not SDP, 488 for an INVITE without a usable SDP offer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiosipua import SipRequest, SipResponse
from aiosipua.headers import parse_address, parse_via, stringify_via
from aiosipua.utils import generate_tag

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.sip.sdp import answer_offer

SIP_VERSION = "SIP/2.0"
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")  # RFC 3261 25.1 token
_CSEQ = re.compile(r"(\d{1,10})[ \t]+(\S+)")
_DIGITS = re.compile(r"\d{1,10}")


@dataclass(frozen=True)
class Rejection:
    """A final error response to send, and the code it is counted under in `vp_errors_total`."""

    status: int
    reason: str
    code: str = "sip_bad_request"
    retry_after_s: int | None = None


def stamp_via(request: SipRequest, addr: tuple[str, int]) -> bool:
    """Point the top Via at the request's source (RFC 3261 18.2.1, RFC 3581); False if it cannot be routed.

    `received` is always the source address and a present `rport` always the source port, so a
    response goes back where the request came from, never to an address the request names.
    """
    raw = request.headers.get("via")
    if not raw:
        return False
    via = parse_via(raw[0])
    via.received = addr[0]
    if "rport" in via.params:
        via.rport = str(addr[1])
    elif via.port is not None and not 1 <= via.port <= 65535:
        return False
    request.headers.remove("via")
    for value in [stringify_via(via), *raw[1:]]:
        request.headers.append("Via", value)
    return True


def check_request(request: SipRequest, request_line: str) -> Rejection | None:
    """The error response a request with a routable Via and a Call-ID gets, or None when it is well formed."""
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("SIP/"):
        return Rejection(400, "Bad Request Line")
    if parts[2] != SIP_VERSION:
        return Rejection(505, "Version Not Supported")
    if not _TOKEN.fullmatch(request.method) or not request.method.isupper():
        return Rejection(400, "Bad Method")  # methods are case-sensitive; aiosipua would take `invite` as INVITE
    missing = [name for name in ("From", "To", "CSeq") if not request.headers.get_first(name)]
    if missing:
        return Rejection(400, f"Missing {missing[0]}")
    cseq = _CSEQ.fullmatch(request.headers.get_first("cseq") or "")
    if cseq is None or int(cseq.group(1)) > MAX_CSEQ or cseq.group(2) != request.method:
        return Rejection(400, "Bad CSeq")
    declared = request.headers.get_first("content-length")
    if declared is not None and not _DIGITS.fullmatch(declared):
        return Rejection(400, "Bad Content-Length")
    if declared is not None and int(declared) > len(request.body):
        return Rejection(400, "Body Shorter Than Content-Length")
    return check_invite(request) if request.method == "INVITE" else None


def check_invite(request: SipRequest) -> Rejection | None:
    """An INVITE needs a Contact (where our BYE goes) and a usable SDP offer (we answer in the 200 OK)."""
    contact = request.headers.get_first("contact")
    if not contact or not parse_address(contact).uri.host:
        return Rejection(400, "Missing Contact")
    if not request.body:
        return Rejection(488, "Not Acceptable Here", code="sip_bad_sdp")  # no offer: we answer offers only
    if (request.content_type or "").split(";")[0].strip().lower() != "application/sdp":
        return Rejection(415, "Unsupported Media Type")
    try:
        answer_offer(request.text, local_ip="127.0.0.1", rtp_port=9)  # the same checks the answer makes
    except ProtocolError:
        return Rejection(488, "Not Acceptable Here", code="sip_bad_sdp")
    return None


def error_response(request: SipRequest, rejection: Rejection, user_agent: str | None) -> SipResponse:
    """A final response to `request` outside any dialog (RFC 3261 8.2.6): Via, From, To with a tag, Call-ID, CSeq."""
    response = SipResponse(status_code=rejection.status, reason_phrase=rejection.reason)
    for via in request.headers.get("via"):
        response.headers.append("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get_first(name)
        if value:
            response.headers.set_single(name, value)
    to = request.headers.get_first("to")
    if to and parse_address(to).tag is None:
        response.headers.set_single("To", f"{to};tag={generate_tag()}")
    if rejection.status == 415:
        response.headers.set_single("Accept", "application/sdp")
    if rejection.retry_after_s is not None:
        response.headers.set_single("Retry-After", str(rejection.retry_after_s))
    if user_agent:
        response.headers.set_single("User-Agent", user_agent)
    return response
