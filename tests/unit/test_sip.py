"""SIP: the SDP answer byte for byte, and the user agent's dialogs driven through a fake transport."""

from __future__ import annotations

import asyncio

import pytest
from aiosipua import SipMessage, SipRequest, SipResponse

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.rtp_endpoint import RtpEndpoint
from voice_pipeline.telephony.sip import MediaPlan, SipAgent, SipCall, answer_offer
from voice_pipeline.telephony.sip.transport import GatedTransport

CRLF = "\r\n"
OFFER = CRLF.join([
    "v=0", "o=- 1234 5678 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    "m=audio 10000 RTP/AVP 9 0 8 101", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv", "",
])
ANSWER = CRLF.join([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    "m=audio 30000 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
    "a=ptime:20", "a=sendrecv", "",
])
CALLER = ("127.0.0.1", 5062)


def test_answer_picks_pcmu_and_mirrors_telephone_event_byte_for_byte() -> None:
    answer, plan = answer_offer(OFFER, local_ip="127.0.0.1", rtp_port=30000, session_id="1")
    assert answer == ANSWER
    assert plan == MediaPlan(("127.0.0.1", 10000), 0, 101, 20)


def test_answer_uses_the_offered_dtmf_payload_type_and_omits_it_when_not_offered() -> None:
    offer_96 = OFFER.replace(" 101", " 96").replace(":101", ":96")
    answer, plan = answer_offer(offer_96, local_ip="127.0.0.1", rtp_port=30000)
    assert "m=audio 30000 RTP/AVP 0 96\r\n" in answer and plan.dtmf_payload_type == 96
    plain = OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 9 0 8")
    plain = plain.replace("a=rtpmap:101 telephone-event/8000\r\n", "").replace("a=fmtp:101 0-15\r\n", "")
    answer, plan = answer_offer(plain, local_ip="127.0.0.1", rtp_port=1)
    assert "telephone-event" not in answer and plan.dtmf_payload_type is None


@pytest.mark.parametrize("offer", [
    OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 9 8 101").replace("a=rtpmap:0 PCMU/8000\r\n", ""),
    OFFER.replace("m=audio", "m=video"),
])
def test_offers_without_pcmu_audio_are_not_acceptable(offer: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        answer_offer(offer, local_ip="127.0.0.1", rtp_port=30000)
    assert caught.value.code == "sdp_not_acceptable"


# --- the user agent over a fake transport -------------------------------------------------------


class FakeSipTransport(GatedTransport):
    def __init__(self) -> None:
        self.local_addr = ("127.0.0.1", 5060)
        self.sent: list[tuple[SipRequest | SipResponse, tuple[str, int]]] = []
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def send(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        self.sent.append((SipMessage.parse(bytes(message)), addr))  # through the wire format
        self.arrived.set()

    def deliver(self, text: str | bytes, addr: tuple[str, int] = CALLER) -> None:
        self._dispatch(text.encode() if isinstance(text, str) else text, addr)

    def responses(self, method: str) -> list[tuple[int, str]]:
        return [(m.status_code, m.reason_phrase) for m, _ in self.sent
                if isinstance(m, SipResponse) and m.cseq is not None and m.cseq.method == method]

    def requests(self, method: str) -> list[SipRequest]:
        return [m for m, _ in self.sent if isinstance(m, SipRequest) and m.method == method]


class _NullDatagram:
    def sendto(self, data: bytes, addr: object) -> None: ...
    def close(self) -> None: ...
    def get_extra_info(self, name: str) -> tuple[str, int]:
        return ("127.0.0.1", 30000)


async def _fake_media() -> RtpEndpoint:
    endpoint = RtpEndpoint()
    endpoint.connection_made(_NullDatagram())  # type: ignore[arg-type]
    return endpoint


def _request(method: str, cseq: int, *, branch: str = "z9hG4bK-1", to_tag: str = "", body: str = "",
             extra: tuple[str, ...] = ()) -> str:
    headers = [
        f"{method} sip:assistant@127.0.0.1:5060 SIP/2.0",
        f"v: SIP/2.0/UDP 127.0.0.1:5062;branch={branch};rport",  # compact Via
        "Max-Forwards: 70",
        "f: <sip:caller@127.0.0.1>;tag=caller-tag",  # compact From
        f"t: <sip:assistant@127.0.0.1:5060>{';tag=' + to_tag if to_tag else ''}",
        "i: call-1@127.0.0.1",  # compact Call-ID
        f"CSeq: {cseq} {method}",
        "m: <sip:caller@127.0.0.1:5062>",  # compact Contact
        *extra,
    ]
    if body:
        headers.append("c: application/sdp")
    headers.append(f"l: {len(body.encode())}")
    return CRLF.join(headers) + CRLF + CRLF + body


class Harness:
    def __init__(self, **agent_options: object) -> None:
        self.transport = FakeSipTransport()
        self.calls: list[SipCall] = []
        self.answered = asyncio.Event()
        self.release = asyncio.Event()
        self.agent = SipAgent(self._handler, port=5060, transport=self.transport, open_media=_fake_media,
                              **agent_options)  # type: ignore[arg-type]

    async def _handler(self, call: SipCall) -> None:
        self.calls.append(call)
        self.answered.set()
        await call.ended.wait()

    def to_tag(self) -> str:
        ok = next(m for m, _ in self.transport.sent if isinstance(m, SipResponse) and m.status_code == 200)
        return ok.to_addr.tag  # type: ignore[union-attr]


async def _settle() -> None:
    for _ in range(20):  # let spawned tasks run; no wall-clock waiting
        await asyncio.sleep(0)


async def test_invite_is_answered_with_our_sdp_then_bye_ends_the_call() -> None:
    h = Harness()
    await h.agent.start()
    h.transport.deliver(_request("INVITE", 1, body=OFFER))
    await asyncio.wait_for(h.answered.wait(), 5)
    assert h.transport.responses("INVITE") == [(100, "Trying"), (200, "OK")]
    ok = h.transport.sent[1][0]
    assert ok.content_type == "application/sdp"
    assert "m=audio 30000 RTP/AVP 0 101" in ok.text and "c=IN IP4 127.0.0.1" in ok.text
    assert ok.get_header("contact") == "<sip:127.0.0.1:5060>"
    assert ok.via[0].branch == "z9hG4bK-1" and ok.call_id == "call-1@127.0.0.1"
    assert h.transport.sent[1][1] == CALLER
    call = h.calls[0]
    assert call.plan.remote_rtp == ("127.0.0.1", 10000) and call.media.remote_addr == ("127.0.0.1", 10000)
    assert call.caller == "sip:caller@127.0.0.1"

    h.transport.deliver(_request("ACK", 1, branch="z9hG4bK-2", to_tag=h.to_tag()))
    h.transport.deliver(_request("BYE", 2, branch="z9hG4bK-3", to_tag=h.to_tag()))
    assert h.transport.responses("BYE") == [(200, "OK")]
    assert call.ended.is_set() and h.agent.calls == {}
    await h.agent.stop()


async def test_hangup_from_our_side_sends_bye() -> None:
    h = Harness()
    await h.agent.start()
    h.transport.deliver(_request("INVITE", 1, body=OFFER))
    await asyncio.wait_for(h.answered.wait(), 5)
    h.transport.deliver(_request("ACK", 1, branch="z9hG4bK-2", to_tag=h.to_tag()))
    h.calls[0].hangup()
    [bye] = h.transport.requests("BYE")
    assert bye.uri == "sip:caller@127.0.0.1:5062" and bye.call_id == "call-1@127.0.0.1"
    assert h.calls[0].ended.is_set()
    await h.agent.stop()


async def test_cancel_while_ringing_gets_200_and_487_and_no_call() -> None:
    gate = asyncio.Event()

    async def slow_media() -> RtpEndpoint:
        await gate.wait()
        return await _fake_media()

    h = Harness()
    h.agent._open_media = slow_media
    await h.agent.start()
    h.transport.deliver(_request("INVITE", 1, body=OFFER))
    await _settle()
    h.transport.deliver(_request("CANCEL", 1))  # same branch as the INVITE
    gate.set()
    await _settle()
    assert h.transport.responses("CANCEL") == [(200, "OK")]
    assert h.transport.responses("INVITE") == [(100, "Trying"), (487, "Request Terminated")]
    assert h.calls == []
    await h.agent.stop()


async def test_offer_without_pcmu_is_rejected_with_488_before_anything_else() -> None:
    h = Harness()
    await h.agent.start()
    no_pcmu = OFFER.replace("RTP/AVP 9 0 8 101", "RTP/AVP 9 8").replace("a=rtpmap:0 PCMU/8000\r\n", "")
    h.transport.deliver(_request("INVITE", 1, body=no_pcmu))
    await _settle()
    assert h.transport.responses("INVITE") == [(488, "Not Acceptable Here")]  # screened: no 100 Trying first
    assert h.calls == []
    await h.agent.stop()


async def test_options_is_answered_with_allow() -> None:
    h = Harness()
    await h.agent.start()
    h.transport.deliver(_request("OPTIONS", 1))
    [(response, _)] = h.transport.sent
    assert response.status_code == 200
    allowed = {method.strip() for value in response.headers.get("allow") for method in value.split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REFER", "NOTIFY"} <= allowed
    await h.agent.stop()


async def test_transfer_sends_refer_and_hangs_up_when_the_transfer_succeeds() -> None:
    h = Harness()
    await h.agent.start()
    h.transport.deliver(_request("INVITE", 1, body=OFFER))
    await asyncio.wait_for(h.answered.wait(), 5)
    tag = h.to_tag()
    h.transport.deliver(_request("ACK", 1, branch="z9hG4bK-2", to_tag=tag))
    call = h.calls[0]
    call.transfer("sip:human@127.0.0.1")
    [refer] = h.transport.requests("REFER")
    assert refer.get_header("refer-to") == "<sip:human@127.0.0.1>"
    assert refer.uri == "sip:caller@127.0.0.1:5062"
    sipfrag = "SIP/2.0 200 OK\r\n"
    notify = _request("NOTIFY", 2, branch="z9hG4bK-4", to_tag=tag, body="",
                      extra=("Event: refer", "Subscription-State: terminated;reason=noresource",
                             "Content-Type: message/sipfrag"))
    notify = notify.replace("l: 0\r\n\r\n", f"l: {len(sipfrag)}\r\n\r\n{sipfrag}")
    h.transport.deliver(notify)
    assert h.transport.responses("NOTIFY") == [(200, "OK")]
    assert call.transfer_status == 200
    assert len(h.transport.requests("BYE")) == 1 and call.ended.is_set()
    await h.agent.stop()


async def test_a_reinvite_gets_488_and_the_call_goes_on() -> None:
    h = Harness()
    await h.agent.start()
    h.transport.deliver(_request("INVITE", 1, body=OFFER))
    await asyncio.wait_for(h.answered.wait(), 5)
    tag = h.to_tag()
    h.transport.deliver(_request("ACK", 1, branch="z9hG4bK-2", to_tag=tag))
    h.transport.deliver(_request("INVITE", 2, branch="z9hG4bK-3", to_tag=tag, body=OFFER))  # hold, or a refresh
    assert h.transport.responses("INVITE")[-1] == (488, "Not Acceptable Here")
    assert not h.calls[0].ended.is_set() and list(h.agent.calls) == ["call-1@127.0.0.1"]
    await h.agent.stop()
