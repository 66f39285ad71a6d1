"""SIP exposure: bound to loopback by default, and only loopback or listed peers are answered (others: 403)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from aiosipua import SipResponse

from tests.unit.test_sip import CALLER, OFFER, Harness, _request, _settle
from voice_pipeline.app.settings import Settings, TelephonySettings
from voice_pipeline.telephony.sip import PeerFilter
from voice_pipeline.telephony.sip.peers import bound_to_loopback
from voice_pipeline.transports.sip import SipService

STRANGER = ("10.1.2.3", 5062)


def _statuses(h: Harness) -> list[tuple[int, tuple[str, int]]]:
    return [(m.status_code, addr) for m, addr in h.transport.sent if isinstance(m, SipResponse)]


def test_sip_listens_on_loopback_and_lists_no_peers_by_default() -> None:
    assert (TelephonySettings().sip_host, TelephonySettings().sip_allowed_peers) == ("127.0.0.1", "")
    assert all(bound_to_loopback(host) for host in ("127.0.0.1", "::1", "localhost"))
    assert not any(bound_to_loopback(host) for host in ("0.0.0.0", "", "::", "192.0.2.1", "pbx.example"))


async def test_by_default_only_loopback_peers_are_answered_and_strangers_get_403() -> None:
    faults: list[str] = []
    h = Harness(on_fault=faults.append)
    await h.agent.start()
    h.transport.deliver(_request("INVITE", 1, body=OFFER), STRANGER)
    h.transport.deliver(_request("OPTIONS", 1, branch="z9hG4bK-o"), STRANGER)
    h.transport.deliver(_request("ACK", 1, branch="z9hG4bK-a"), STRANGER)  # never answered, but counted
    await _settle()
    assert _statuses(h) == [(403, STRANGER), (403, STRANGER)]
    assert h.calls == [] and faults == ["sip_forbidden"] * 3
    h.transport.deliver(_request("OPTIONS", 1, branch="z9hG4bK-o2"), CALLER)
    assert _statuses(h)[-1] == (200, CALLER)
    await h.agent.stop()


async def test_listed_peers_are_answered_and_others_still_get_403() -> None:
    h = Harness(peers=PeerFilter.parse("10.1.0.0/16, 192.0.2.7"))
    await h.agent.start()
    h.transport.deliver(_request("INVITE", 1, body=OFFER), STRANGER)
    await _settle()
    h.transport.deliver(_request("OPTIONS", 1, branch="z9hG4bK-o"), ("192.0.2.8", 5060))
    assert [status for status, _ in _statuses(h)] == [100, 200, 403]
    [call] = h.calls
    assert call.media.allowed_hosts == {"127.0.0.1", STRANGER[0]}  # RTP from the SDP's host or the SIP peer only
    await h.agent.stop()


def test_the_allow_list_takes_addresses_and_networks_and_always_loopback() -> None:
    peers = PeerFilter.parse(" 192.0.2.0/24 ,2001:db8::1,")
    allowed = ("192.0.2.9", "2001:db8::1", "127.0.0.1", "::1", "::ffff:127.0.0.1")
    assert all(peers.allows(host) for host in allowed)
    assert not any(peers.allows(host) for host in ("192.0.3.1", "2001:db8::2", "localhost", ""))
    assert not PeerFilter().allows("10.0.0.1")
    with pytest.raises(ValueError, match="pbx.example"):
        PeerFilter.parse("10.0.0.1, pbx.example")


async def test_a_bad_allow_list_keeps_sip_off(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings()
    settings.telephony.sip_port, settings.telephony.sip_allowed_peers = 0, "10.0.0.0/8, not-an-address"
    service = SipService(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        assert await service.start() is None
    assert "not-an-address" in caplog.text
