"""SIP under abuse: named broken requests get their exact 4xx, and seeded mutations never break the agent.

Every request that has a routable Via and a Call-ID must get exactly one final response (plus at
most one 100 Trying), echoing its Call-ID, branch and CSeq; anything else gets nothing; no
malformed INVITE gets 200; no exception escapes and no task is left with an unretrieved one.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable

import pytest
from aiosipua import SipMessage, SipRequest, SipResponse
from aiosipua.headers import parse_via

from tests.unit.test_sip import CALLER, OFFER, Harness, SipCall, _request, _settle

SEED = 20261127
FUZZ_CASES = 600
TRUNCATIONS = 150
METHODS = ["INVITE"] * 4 + ["OPTIONS", "BYE", "CANCEL", "ACK", "REGISTER", "INFO", "NOTIFY", "REFER",
                             "PRACK", "UPDATE", "MESSAGE", "SUBSCRIBE"]
NASTY = [b"", b"abc", b"-1", b"0", b"99999999999", b"\x00", b"\xff\xfe", b"%s%n", "\u2603".encode(),
         b"A" * 3000, b";;;", b"<>", b"\r\n", b" ", b"SIP/2.0", b"sip:", b"1 INVITE"]


def _message(method: str, call_id: str, branch: str, *, body: str | None = None,
             edit: Callable[[str], str] = lambda text: text) -> bytes:
    if body is None:
        body = OFFER if method == "INVITE" else ""
    text = _request(method, 1, branch=branch, body=body).replace("call-1@127.0.0.1", call_id)
    return edit(text).encode()


def _sdp(old: str, new: str) -> dict[str, str]:
    return {"body": OFFER.replace(old, new)}


def _headers(old: str, new: str) -> dict[str, Callable[[str], str]]:
    return {"edit": lambda text: text.replace(old, new, 1)}


NO_RPORT = _headers(";rport", "")
NAMED_INVITES: list[tuple[str, dict, int | None]] = [
    ("m=audio -5", _sdp("m=audio 10000", "m=audio -5"), 488),
    ("m=audio 99999999999", _sdp("m=audio 10000", "m=audio 99999999999"), 488),
    ("m=audio abc", _sdp("m=audio 10000", "m=audio abc"), 488),
    ("m=audio 0", _sdp("m=audio 10000", "m=audio 0"), 488),
    ("m=audio 65536", _sdp("m=audio 10000", "m=audio 65536"), 488),
    ("telephone-event/abc", _sdp("telephone-event/8000", "telephone-event/abc"), 488),
    ("rtpmap:abc", _sdp("a=rtpmap:0 PCMU", "a=rtpmap:abc PCMU"), 488),
    ("fmtp:x", _sdp("a=fmtp:101", "a=fmtp:x"), 488),
    ("payload type 300", _sdp("RTP/AVP 9 0 8 101", "RTP/AVP 9 0 8 300"), 488),
    ("payload 0 is not PCMU", _sdp("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMA/8000"), 488),
    ("no PCMU", _sdp("RTP/AVP 9 0 8 101", "RTP/AVP 9 8 101"), 488),
    ("SRTP", _sdp("RTP/AVP", "RTP/SAVP"), 488),
    ("video only", _sdp("m=audio", "m=video"), 488),
    ("c= 999.1.1.1", _sdp("c=IN IP4 127.0.0.1", "c=IN IP4 999.1.1.1"), 488),
    ("c= a host name", _sdp("c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example.com"), 488),
    ("c= 0.0.0.0", _sdp("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"), 488),
    ("c= IPv6", _sdp("c=IN IP4 127.0.0.1", "c=IN IP6 ::1"), 488),
    ("no c=", _sdp("c=IN IP4 127.0.0.1\r\n", ""), 488),
    ("v=x", _sdp("v=0", "v=x"), 488),
    ("binary body", {"body": "".join(map(chr, range(256)))}, 488),
    ("no body", {"body": ""}, 488),
    ("body not SDP", _headers("c: application/sdp", "c: text/plain"), 415),
    ("CSeq: abc INVITE", _headers("CSeq: 1 INVITE", "CSeq: abc INVITE"), 400),
    ("CSeq: 1 BYE", _headers("CSeq: 1 INVITE", "CSeq: 1 BYE"), 400),
    ("CSeq: 99999999999", _headers("CSeq: 1 INVITE", "CSeq: 99999999999 INVITE"), 400),
    ("CSeq: -1", _headers("CSeq: 1 INVITE", "CSeq: -1 INVITE"), 400),
    ("no CSeq", _headers("CSeq: 1 INVITE\r\n", ""), 400),
    ("no From", _headers("f: <sip:caller@127.0.0.1>;tag=caller-tag\r\n", ""), 400),
    ("no To", _headers("t: <sip:assistant@127.0.0.1:5060>\r\n", ""), 400),
    ("no Contact", _headers("m: <sip:caller@127.0.0.1:5062>\r\n", ""), 400),
    ("Content-Length too large", {"edit": lambda text: text.replace("l: ", "l: 1", 1)}, 400),
    ("Content-Length abc", {"edit": lambda text: text.replace("l: ", "l: abc", 1)}, 400),
    ("SIP/3.0", _headers(" SIP/2.0\r\n", " SIP/3.0\r\n"), 505),
    ("lower-case method", _headers("INVITE sip:", "invite sip:"), 400),
    ("To tag of no dialog", _headers("t: <sip:assistant@127.0.0.1:5060>", "t: <sip:assistant@127.0.0.1:5060>;tag=x"),
     481),
    ("no Via", _headers("v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-n;rport\r\n", ""), None),
    ("no Call-ID", {"edit": lambda text: "".join(line for line in text.splitlines(True) if not line.startswith("i:"))},
     None),
    ("Via port 99999", {"edit": lambda text: NO_RPORT["edit"](text).replace(":5062;", ":99999;", 1)}, None),
]
NAMED_DATAGRAMS: list[tuple[str, bytes, bool]] = [  # name, datagram, counted as a fault
    ("empty", b"", False), ("keep-alive", b"\r\n\r\n", False), ("junk", bytes(range(256)), True),
    ("request line only", b"INVITE sip:assistant@127.0.0.1 SIP/2.0\r\n\r\n", True),
    ("no start line", b"\r\nVia: x\r\n\r\n", True), ("bad status", b"SIP/2.0 abc OK\r\n\r\n", True),
    ("stray response", b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", False),  # to no transaction of ours
]
NAMED_OTHERS: list[tuple[str, str, dict, int]] = [
    ("OPTIONS CSeq: abc", "OPTIONS", _headers("CSeq: 1 OPTIONS", "CSeq: abc OPTIONS"), 400),
    ("REGISTER", "REGISTER", {}, 405),
    ("BYE of no call", "BYE", {}, 481),
    ("CANCEL of no INVITE", "CANCEL", {}, 481),
    ("BYE with CSeq of INVITE", "BYE", _headers("CSeq: 1 BYE", "CSeq: 1 INVITE"), 400),
]


class Exchange:
    """The agent over the fake transport; each call is hung up as soon as it is answered."""

    def __init__(self) -> None:
        self.h = Harness()
        self.calls: list[SipCall] = []
        self.sent = 0
        self.unretrieved: list[dict] = []

        async def hang_up_at_once(call: SipCall) -> None:
            self.calls.append(call)

        self.h.agent.on_call = hang_up_at_once

    async def __aenter__(self) -> Exchange:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: self.unretrieved.append(context))
        await self.h.agent.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.h.agent.stop()
        gc.collect()  # a task with an unretrieved exception reports it when it is collected
        await asyncio.sleep(0)
        asyncio.get_running_loop().set_exception_handler(None)

    async def send(self, data: bytes, addr: tuple[str, int] = CALLER) -> list[SipResponse]:
        before = len(self.h.transport.sent)
        self.h.transport._dispatch(data, addr)  # raises if anything escapes the agent
        self.sent += 1
        await _settle()
        return [m for m, _ in self.h.transport.sent[before:] if isinstance(m, SipResponse)]


def _answerable(data: bytes) -> SipRequest | None:
    """The request when it has a Call-ID and a Via a response can be routed by (and is not an ACK)."""
    try:
        message = SipMessage.parse(data)
    except Exception:
        return None
    if not isinstance(message, SipRequest) or message.method == "ACK" or not message.call_id:
        return None
    vias = message.headers.get("via")
    if not vias:
        return None
    via = parse_via(vias[0])
    return message if "rport" in via.params or via.port is None or 1 <= via.port <= 65535 else None


def _check_answers(data: bytes, responses: list[SipResponse]) -> int | None:
    """Exactly one well-formed final response to an answerable request, none to anything else; its status."""
    request = _answerable(data)
    if request is None:
        assert responses == []
        return None
    finals = [r for r in responses if r.status_code >= 200]
    assert len(finals) == 1, [(r.status_code, r.reason_phrase) for r in responses]
    assert [r.status_code for r in responses if r.status_code < 200] in ([], [100])
    for response in responses:
        assert response.status_code <= 699 and response.reason_phrase
        assert response.call_id == request.call_id
        assert response.via[0].branch == request.via[0].branch
        assert (response.headers.get_first("cseq") or "") == (request.headers.get_first("cseq") or "")
    return finals[0].status_code


@pytest.mark.parametrize(("name", "change", "status"), NAMED_INVITES, ids=[case[0] for case in NAMED_INVITES])
async def test_a_broken_invite_gets_its_error_and_never_200(name: str, change: dict, status: int | None) -> None:
    async with Exchange() as ex:
        data = _message("INVITE", "named@127.0.0.1", "z9hG4bK-n", **change)
        assert _check_answers(data, await ex.send(data)) == status
        assert ex.calls == []
    assert ex.unretrieved == []


@pytest.mark.parametrize(("name", "method", "change", "status"), NAMED_OTHERS, ids=[case[0] for case in NAMED_OTHERS])
async def test_other_broken_requests_get_their_error(name: str, method: str, change: dict, status: int) -> None:
    async with Exchange() as ex:
        data = _message(method, "named@127.0.0.1", "z9hG4bK-n", **change)
        assert _check_answers(data, await ex.send(data)) == status


async def test_datagrams_that_cannot_be_answered_are_dropped_and_counted() -> None:
    async with Exchange() as ex:
        for _, data, _ in NAMED_DATAGRAMS:
            assert await ex.send(data) == []
        assert sum(ex.h.agent.gate.faults.values()) == sum(counted for _, _, counted in NAMED_DATAGRAMS)


async def test_a_well_formed_invite_is_still_answered() -> None:
    async with Exchange() as ex:
        data = _message("INVITE", "good@127.0.0.1", "z9hG4bK-g")
        assert _check_answers(data, await ex.send(data)) == 200 and len(ex.calls) == 1


# --- seeded mutations ---------------------------------------------------------------------------


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def _flip(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(NASTY) + data[at:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 20):]


def _shuffle_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    match rng.randrange(3):
        case 0:
            del lines[i]
        case 1:
            lines.insert(j, lines[i])
        case _:
            lines[i], lines[j] = lines[j], lines[i]
    return b"\r\n".join(lines)


def _nasty_value(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    headers = [i for i, line in enumerate(lines[1:], 1) if b":" in line]
    i = rng.choice(headers)
    lines[i] = lines[i].split(b":", 1)[0] + b": " + rng.choice(NASTY)
    return b"\r\n".join(lines)


MUTATIONS = [_flip, _insert, _delete, _shuffle_line, _nasty_value]


def _mutated(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        if data:
            data = rng.choice(MUTATIONS)(rng, data)
    return data


async def test_seeded_truncations_of_an_invite_are_never_answered_200() -> None:
    rng = random.Random(SEED)
    async with Exchange() as ex:
        for n in range(TRUNCATIONS):
            whole = _message("INVITE", f"cut-{n}@127.0.0.1", f"z9hG4bK-cut-{n}")
            data = whole[:rng.randrange(1, len(whole))]
            assert _check_answers(data, await ex.send(data)) != 200, data
        assert ex.calls == [] and ex.sent == TRUNCATIONS
    assert ex.unretrieved == []


async def test_seeded_mutations_of_every_request_break_nothing() -> None:
    rng = random.Random(SEED + 1)
    async with Exchange() as ex:
        for n in range(FUZZ_CASES):
            tag = f"{rng.getrandbits(64):016x}"
            data = _mutated(rng, _message(rng.choice(METHODS), f"fz-{tag}@127.0.0.1", f"z9hG4bK-{tag}"))
            _check_answers(data, await ex.send(data))
        assert len({call.call_id for call in ex.calls}) == len(ex.calls)  # never two calls for one INVITE
        assert ex.h.agent.gate.faults["sip_internal"] == 0
        control = _message("INVITE", "after@127.0.0.1", "z9hG4bK-after")
        assert _check_answers(control, await ex.send(control)) == 200  # still answering
    assert ex.unretrieved == []


# --- the fault barrier --------------------------------------------------------------------------


async def test_an_exception_in_signalling_is_answered_500_counted_and_contained() -> None:
    async with Exchange() as ex:
        faults: list[str] = []
        ex.h.agent.gate.on_fault = faults.append

        def broken(*_: object) -> None:
            raise KeyError("a bug in a handler")

        ex.h.agent.uas._handlers["OPTIONS"] = broken  # type: ignore[union-attr]
        data = _message("OPTIONS", "boom@127.0.0.1", "z9hG4bK-b")
        assert _check_answers(data, await ex.send(data)) == 500
        assert faults == ["sip_internal"]
        control = _message("INVITE", "after@127.0.0.1", "z9hG4bK-after")
        assert _check_answers(control, await ex.send(control)) == 200


async def test_a_failing_call_set_up_is_answered_500_and_leaves_no_unretrieved_task() -> None:
    async with Exchange() as ex:
        async def no_media() -> None:
            raise RuntimeError("a bug while opening RTP")

        ex.h.agent._open_media = no_media  # type: ignore[assignment]
        data = _message("INVITE", "setup@127.0.0.1", "z9hG4bK-s")
        assert _check_answers(data, await ex.send(data)) == 500
        assert ex.h.agent.gate.faults["sip_internal"] == 1 and ex.h.agent.answering == 0
    assert ex.unretrieved == []
