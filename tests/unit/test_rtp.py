"""RTP packets byte for byte, the jitter buffer, RFC 4733 DTMF and the real-time pacer (driven clock)."""

from __future__ import annotations

import pytest

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.rtp import (
    DtmfDecoder,
    DtmfDigit,
    JitterBuffer,
    JitterStats,
    RtpPacer,
    RtpPacket,
    build_dtmf_payload,
    build_rtp,
    parse_rtp,
)


def _pkt(sequence: int, payload: bytes = b"\xff" * 160, timestamp: int | None = None) -> RtpPacket:
    return RtpPacket(0, sequence & 0xFFFF, 160 * sequence if timestamp is None else timestamp, 0x1234, payload)


def test_build_rtp_byte_for_byte() -> None:
    packet = RtpPacket(payload_type=0, sequence=0x0102, timestamp=0x03040506, ssrc=0x0708090A, payload=b"\xff\xfe",
                       marker=True)
    assert build_rtp(packet) == bytes.fromhex("80 80 0102 03040506 0708090a fffe")
    assert parse_rtp(build_rtp(packet)) == packet


def test_parse_skips_csrcs_extension_and_padding() -> None:
    header = bytes.fromhex("b1 00 0001 00000010 00000020")  # V=2, padding, extension, 1 CSRC
    csrc = bytes.fromhex("00000099")
    extension = bytes.fromhex("bede 0001 11223344")  # one 32-bit word of extension
    data = header + csrc + extension + b"\x01\x02\x03" + b"\x00\x02"  # payload + 2 bytes of padding
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (0, 1, 16, 32)
    assert packet.payload == b"\x01\x02\x03"


@pytest.mark.parametrize("data", [b"\x80\x00", bytes.fromhex("40 00 0001 00000000 00000000"),
                                  bytes.fromhex("90 00 0001 00000000 00000000 bede")])
def test_malformed_rtp_raises(data: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_rtp(data)
    assert caught.value.code == "invalid_rtp"


def test_in_order_packets_are_released_at_once() -> None:
    buffer = JitterBuffer(depth=3)
    assert [p.sequence for p in buffer.push(_pkt(10))] == [10]
    assert [p.sequence for p in buffer.push(_pkt(11))] == [11]
    assert buffer.stats == JitterStats(received=2, released=2, late=0, lost=0)


def test_reordered_packets_come_out_in_order() -> None:
    buffer = JitterBuffer(depth=3)
    out = buffer.push(_pkt(1)) + buffer.push(_pkt(3)) + buffer.push(_pkt(4))
    assert [p.sequence for p in out] == [1]
    out = buffer.push(_pkt(2))
    assert [p.sequence for p in out] == [2, 3, 4]
    assert buffer.stats.lost == 0


def test_a_missing_packet_is_skipped_once_the_buffer_is_full_and_counted_lost() -> None:
    buffer = JitterBuffer(depth=2)
    buffer.push(_pkt(1))
    assert buffer.push(_pkt(3)) == [] and buffer.push(_pkt(4)) == []
    assert [p.sequence for p in buffer.push(_pkt(5))] == [3, 4, 5]
    assert buffer.push(_pkt(2)) == []  # too late now
    assert buffer.stats == JitterStats(received=5, released=4, late=1, lost=1)


def test_duplicates_are_counted_late_and_dropped() -> None:
    buffer = JitterBuffer(depth=3)
    buffer.push(_pkt(1))
    buffer.push(_pkt(3))
    assert buffer.push(_pkt(3)) == [] and buffer.push(_pkt(1)) == []
    assert buffer.stats.late == 2


def test_sequence_numbers_wrap() -> None:
    buffer = JitterBuffer(depth=3)
    out = buffer.push(_pkt(65534)) + buffer.push(_pkt(0)) + buffer.push(_pkt(65535))
    assert [p.sequence for p in out] == [65534, 65535, 0]


def test_flush_releases_what_is_held_in_order() -> None:
    buffer = JitterBuffer(depth=5)
    buffer.push(_pkt(1))
    buffer.push(_pkt(4))
    buffer.push(_pkt(3))
    assert [p.sequence for p in buffer.flush()] == [3, 4]
    assert buffer.stats.lost == 1


def _dtmf(digit: str, timestamp: int, *, end: bool, duration: int) -> RtpPacket:
    return RtpPacket(101, 0, timestamp, 1, build_dtmf_payload(digit, end=end, duration_samples=duration))


def test_dtmf_reports_each_key_press_once_at_its_end() -> None:
    decoder = DtmfDecoder()
    presses = [
        _dtmf("5", 8000, end=False, duration=160),
        _dtmf("5", 8000, end=False, duration=320),
        _dtmf("5", 8000, end=True, duration=800),
        _dtmf("5", 8000, end=True, duration=800),
        _dtmf("5", 8000, end=True, duration=800),
        _dtmf("#", 16000, end=True, duration=400),
    ]
    digits = [digit for digit in map(decoder.push, presses) if digit is not None]
    assert digits == [DtmfDigit("5", 100.0), DtmfDigit("#", 50.0)]


def test_dtmf_payload_byte_for_byte() -> None:
    # RFC 4733 §3.9.1: event 1... here event "*" (10), end bit, volume 10, duration 0x0320.
    assert build_dtmf_payload("*", end=True, duration_samples=800) == bytes.fromhex("0a 8a 0320")
    with pytest.raises(ProtocolError):
        DtmfDecoder().push(RtpPacket(101, 0, 0, 1, b"\x01"))


def test_pacer_sends_at_real_time_with_a_small_lead() -> None:
    pacer = RtpPacer(ssrc=7, lead_s=0.04)
    for n in range(10):
        pacer.enqueue(bytes([n]) * 160)
    first = pacer.due(100.0)
    assert len(first) == 3  # due now, +20 ms and +40 ms (the lead)
    assert pacer.due(100.0) == []
    assert len(pacer.due(100.02)) == 1
    assert pacer.next_wake_s() == pytest.approx(100.04)
    rest = pacer.due(100.2)
    assert len(rest) == 6 and pacer.queued_frames == 0
    packets = [parse_rtp(data) for data in first + rest]
    assert [p.sequence for p in packets] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert [p.timestamp for p in packets][:3] == [0, 160, 320]
    assert [p.marker for p in packets][:2] == [True, False]


def test_pacer_flush_drops_queued_frames_at_once() -> None:
    pacer = RtpPacer(ssrc=7, lead_s=0.0)
    for _ in range(50):
        pacer.enqueue(b"\xff" * 160)
    pacer.due(0.0)
    assert pacer.flush() == 49
    assert pacer.due(10.0) == [] and pacer.next_wake_s() is None


def test_pacer_after_silence_jumps_the_timestamp_and_sets_the_marker() -> None:
    pacer = RtpPacer(ssrc=7, lead_s=0.0)
    pacer.enqueue(b"\xff" * 160)
    pacer.due(0.0)
    assert pacer.due(0.02) == []  # played out: idle
    pacer.enqueue(b"\xff" * 160)
    packet = parse_rtp(pacer.due(1.0)[0])
    assert packet.marker and packet.sequence == 1
    assert packet.timestamp == 8000  # one second of media clock later


def test_pacer_refuses_frames_past_its_bound() -> None:
    pacer = RtpPacer(ssrc=7, max_frames=2)
    assert pacer.enqueue(b"a") and pacer.enqueue(b"b")
    assert not pacer.enqueue(b"c")


def test_continuous_pacer_fills_gaps_with_silence_and_keeps_the_media_clock() -> None:
    silence = b"\xff" * 160
    pacer = RtpPacer(ssrc=7, lead_s=0.04, silence_frame=silence)
    first = [parse_rtp(data) for data in pacer.due(0.0)]
    assert [p.payload for p in first] == [silence] and first[0].marker
    assert pacer.next_wake_s() == pytest.approx(0.02)
    assert pacer.due(0.01) == []  # silence is never sent ahead of its time
    pacer.enqueue(b"\x01" * 160)
    pacer.enqueue(b"\x02" * 160)
    reply = [parse_rtp(data) for data in pacer.due(0.01)]  # reply frames may go up to the lead early
    assert [p.payload[:1] for p in reply] == [b"\x01", b"\x02"]
    later = [parse_rtp(data) for data in pacer.due(0.065)]
    assert [p.payload for p in later] == [silence]
    packets = first + reply + later
    assert [p.timestamp for p in packets] == [0, 160, 320, 480]
    assert [p.sequence for p in packets] == [0, 1, 2, 3]
    assert not any(p.marker for p in packets[1:])


def test_continuous_pacer_skips_silence_missed_during_a_stall() -> None:
    pacer = RtpPacer(ssrc=7, lead_s=0.0, silence_frame=b"\xff" * 160, max_catch_up_frames=5)
    pacer.due(0.0)
    caught_up = [parse_rtp(data) for data in pacer.due(1.0)]  # 50 frames late
    assert len(caught_up) == 6  # the last 5 frames' worth plus the one due now
    assert caught_up[-1].timestamp == 50 * 160
    assert pacer.flush() == 0
