"""RtpEndpoint without a socket (packets in through datagram_received, out through pump); its sender on loopback."""

from __future__ import annotations

import asyncio

from voice_pipeline.telephony.rtp import RtpPacket, build_dtmf_payload, build_rtp, parse_rtp
from voice_pipeline.telephony.rtp_endpoint import RtpAudio, RtpDtmf, RtpEndpoint

PEER = ("127.0.0.1", 40000)


class FakeDatagramTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.closed = False

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> tuple[str, int]:
        return ("127.0.0.1", 30000)

    def close(self) -> None:
        self.closed = True


def _endpoint(**kwargs) -> tuple[RtpEndpoint, FakeDatagramTransport]:
    endpoint = RtpEndpoint(PEER, dtmf_payload_type=101, **kwargs)
    transport = FakeDatagramTransport()
    endpoint.connection_made(transport)  # type: ignore[arg-type]
    return endpoint, transport


def _audio(sequence: int, fill: int) -> bytes:
    return build_rtp(RtpPacket(0, sequence, sequence * 160, 99, bytes([fill]) * 160))


async def test_reordered_audio_and_a_digit_are_read_in_order() -> None:
    endpoint, _ = _endpoint()
    endpoint.datagram_received(_audio(1, 1), PEER)
    endpoint.datagram_received(_audio(3, 3), PEER)
    endpoint.datagram_received(_audio(2, 2), PEER)
    endpoint.datagram_received(build_rtp(RtpPacket(101, 4, 480, 99, build_dtmf_payload("7", end=True,
                                                                                     duration_samples=800))), PEER)
    endpoint.datagram_received(b"junk", PEER)
    events = [await endpoint.read() for _ in range(4)]
    assert events == [RtpDtmf("7", 100.0), RtpAudio(bytes([1]) * 160), RtpAudio(bytes([2]) * 160),
                      RtpAudio(bytes([3]) * 160)]
    assert endpoint.stats.invalid_packets == 1
    await endpoint.close()
    assert await endpoint.read() is None


async def test_audio_in_is_bounded_and_drops_the_oldest() -> None:
    endpoint, _ = _endpoint(max_audio_frames=2)
    for sequence in range(1, 5):
        endpoint.datagram_received(_audio(sequence, sequence), PEER)
    assert endpoint.stats.dropped_audio_frames == 2
    assert await endpoint.read() == RtpAudio(bytes([3]) * 160)
    await endpoint.close()


async def test_reply_audio_is_paced_and_flushed_on_barge_in() -> None:
    endpoint, transport = _endpoint(lead_s=0.0, send_silence=False)
    for _ in range(10):
        assert endpoint.send_audio(b"\xff" * 160)
    assert endpoint.pump(5.0) == 1
    assert endpoint.pump(5.04) == 2
    assert endpoint.flush_audio() == 7
    assert endpoint.pump(6.0) == 0
    sequences = [parse_rtp(data).sequence for data, _ in transport.sent]
    assert len(sequences) == 3 and all(addr == PEER for _, addr in transport.sent)
    assert (sequences[1] - sequences[0]) & 0xFFFF == 1
    assert endpoint.stats.sent_packets == 3 and endpoint.stats.flushed_frames == 7
    assert endpoint.sent_audio_ms == 60.0
    await endpoint.close()
    assert transport.closed


async def test_replies_go_where_the_callers_audio_comes_from() -> None:
    endpoint, transport = _endpoint(lead_s=0.0, send_silence=False)
    moved = ("127.0.0.1", 40002)
    endpoint.datagram_received(_audio(1, 0), moved)
    endpoint.send_audio(b"\xff" * 160)
    endpoint.pump(1.0)
    assert transport.sent[0][1] == moved
    await endpoint.close()


async def test_silence_fills_the_time_between_replies() -> None:
    endpoint, transport = _endpoint(lead_s=0.0)
    endpoint.pump(1.0)
    endpoint.send_audio(b"\x01" * 160)
    endpoint.pump(1.02)
    endpoint.pump(1.04)
    payloads = [parse_rtp(data).payload[:1] for data, _ in transport.sent]
    assert payloads == [b"\xff", b"\x01", b"\xff"]
    assert endpoint.sent_audio_ms == 20.0  # silence is not reply audio
    await endpoint.close()


async def test_packets_from_a_host_outside_allowed_hosts_are_ignored_and_cannot_take_the_stream() -> None:
    endpoint, transport = _endpoint(lead_s=0.0, send_silence=False)
    endpoint.allowed_hosts = frozenset({"127.0.0.1"})
    endpoint.datagram_received(_audio(1, 9), ("10.9.9.9", 40000))
    assert endpoint.remote_addr == PEER and endpoint.stats.foreign_packets == 1
    endpoint.datagram_received(_audio(1, 0), ("127.0.0.1", 40002))  # the peer's NAT moved its port: still followed
    endpoint.send_audio(b"\xff" * 160)
    endpoint.pump(1.0)
    assert transport.sent[0][1] == ("127.0.0.1", 40002)
    await endpoint.close()
    assert [await endpoint.read(), await endpoint.read()] == [RtpAudio(bytes([0]) * 160), None]  # no stranger's audio


async def test_a_sender_that_cannot_send_stops_without_an_unretrieved_exception() -> None:
    endpoint = await RtpEndpoint.open("127.0.0.1", 0)
    endpoint.remote_addr = ("127.0.0.1", 99999999999)  # what an unchecked SDP port would have given
    sender = endpoint._sender
    assert sender is not None
    await asyncio.wait_for(asyncio.shield(sender), 5)  # ends by itself, with no exception
    assert sender.exception() is None
    await endpoint.close()
