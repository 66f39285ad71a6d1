"""SIP retransmissions (RFC 3261 17.2): a request sent again gets the same response again, and starts nothing new."""

from __future__ import annotations

import asyncio

from aiosipua import SipResponse

from tests.unit.test_sip import OFFER, Harness, RtpEndpoint, _fake_media, _request, _settle

INVITE = _request("INVITE", 1, body=OFFER)


def _finals(h: Harness, method: str) -> list[SipResponse]:
    return [m for m, _ in h.transport.sent if isinstance(m, SipResponse) and m.status_code >= 200
            and m.cseq is not None and m.cseq.method == method]


async def test_a_retransmitted_invite_gets_the_same_200_and_no_second_call() -> None:
    h = Harness()
    await h.agent.start()
    h.transport.deliver(INVITE)
    await asyncio.wait_for(h.answered.wait(), 5)
    h.transport.deliver(INVITE)  # the 200 OK was lost: the phone sends its INVITE again
    await _settle()
    assert h.transport.responses("INVITE") == [(100, "Trying"), (200, "OK"), (200, "OK")]
    first, again = _finals(h, "INVITE")
    assert again.to_addr.tag == first.to_addr.tag and again.body == first.body  # type: ignore[union-attr]
    assert len(h.calls) == 1 and list(h.agent.calls) == ["call-1@127.0.0.1"]
    await h.agent.stop()


async def test_an_invite_sent_again_while_it_is_being_answered_gets_100_again_and_one_call() -> None:
    gate = asyncio.Event()
    opened = 0

    async def slow_media() -> RtpEndpoint:
        nonlocal opened
        opened += 1
        await gate.wait()
        return await _fake_media()

    h = Harness()
    h.agent._open_media = slow_media
    await h.agent.start()
    h.transport.deliver(INVITE)
    await _settle()
    h.transport.deliver(INVITE)
    gate.set()
    await asyncio.wait_for(h.answered.wait(), 5)
    await _settle()
    assert h.transport.responses("INVITE") == [(100, "Trying"), (100, "Trying"), (200, "OK")]
    assert opened == 1 and len(h.calls) == 1
    await h.agent.stop()


async def test_a_retransmitted_rejected_invite_gets_the_same_488() -> None:
    h = Harness()
    await h.agent.start()
    video = _request("INVITE", 1, body=OFFER.replace("m=audio", "m=video"))
    h.transport.deliver(video)
    h.transport.deliver(video)
    await _settle()
    first, again = _finals(h, "INVITE")
    assert (first.status_code, again.status_code) == (488, 488)
    assert again.to_addr.tag == first.to_addr.tag  # type: ignore[union-attr]
    assert h.calls == []
    await h.agent.stop()


async def test_a_retransmitted_bye_gets_200_again_not_481() -> None:
    h = Harness()
    await h.agent.start()
    h.transport.deliver(INVITE)
    await asyncio.wait_for(h.answered.wait(), 5)
    tag = h.to_tag()
    h.transport.deliver(_request("ACK", 1, branch="z9hG4bK-2", to_tag=tag))
    bye = _request("BYE", 2, branch="z9hG4bK-3", to_tag=tag)
    h.transport.deliver(bye)
    h.transport.deliver(bye)  # our 200 OK was lost
    assert h.transport.responses("BYE") == [(200, "OK"), (200, "OK")]
    assert h.calls[0].ended.is_set()
    await h.agent.stop()
