"""RTP for phone calls, without I/O: RFC 3550 packets, a small jitter buffer, RFC 4733 DTMF, pacing.

The socket side (an asyncio DatagramProtocol per call) lives in `rtp_endpoint.py`.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from voice_pipeline.errors import ProtocolError

RTP_VERSION = 2
RTP_HEADER_BYTES = 12
PCMU_PAYLOAD_TYPE = 0
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz
FRAME_S = 0.020
DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 events 0..15
_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False


def build_rtp(packet: RtpPacket) -> bytes:
    """Serialise an RTP packet: version 2, no padding, no extension, no CSRCs."""
    first = RTP_VERSION << 6
    second = (0x80 if packet.marker else 0) | (packet.payload_type & 0x7F)
    header = _HEADER.pack(first, second, packet.sequence & 0xFFFF, packet.timestamp & 0xFFFFFFFF, packet.ssrc)
    return header + packet.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse an RTP packet (RFC 3550 §5.1), skipping CSRCs, a header extension and padding."""
    if len(data) < RTP_HEADER_BYTES:
        raise ProtocolError("invalid_rtp", f"RTP packet of {len(data)} bytes is shorter than its header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise ProtocolError("invalid_rtp", f"RTP version {first >> 6}, expected 2")
    offset = RTP_HEADER_BYTES + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            raise ProtocolError("invalid_rtp", "RTP header extension is truncated")
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if first & 0x20:  # padding: the last byte counts the padding bytes
        end -= data[-1]
    if offset > end:
        raise ProtocolError("invalid_rtp", "RTP header is longer than the packet")
    return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]), bool(second & 0x80))


@dataclass(frozen=True)
class JitterStats:
    received: int
    released: int
    late: int  # arrived after its turn had passed (or a duplicate)
    lost: int  # sequence numbers skipped because they never came in time


class JitterBuffer:
    """Reorders packets by sequence number; holds at most `depth` packets while waiting for a gap.

    A packet that is next in sequence is released at once (no added delay when nothing is
    reordered). A missing packet is waited for until `depth` later packets are held, then counted
    lost and skipped. Sequence numbers wrap at 2**16.
    """

    def __init__(self, depth: int = 3) -> None:
        if depth < 1:
            raise ValueError("jitter buffer depth must be at least 1")
        self.depth = depth
        self._held: dict[int, RtpPacket] = {}  # extended sequence -> packet
        self._next: int | None = None  # extended sequence number of the next packet to release
        self._received = self._released = self._late = self._lost = 0

    def push(self, packet: RtpPacket) -> list[RtpPacket]:
        """Add a packet; returns the packets now ready, in order."""
        self._received += 1
        if self._next is None:
            self._next = packet.sequence
        delta = (packet.sequence - self._next) & 0xFFFF
        if delta >= 0x8000:  # behind the release point: too late to play
            self._late += 1
            return []
        extended = self._next + delta
        if extended in self._held:
            self._late += 1
            return []
        self._held[extended] = packet
        return self._release(flush=False)

    def flush(self) -> list[RtpPacket]:
        """Release everything held, in order (end of the call)."""
        return self._release(flush=True)

    def _release(self, flush: bool) -> list[RtpPacket]:
        ready: list[RtpPacket] = []
        while self._held and self._next is not None:
            if self._next in self._held:
                ready.append(self._held.pop(self._next))
                self._next += 1
            elif flush or len(self._held) > self.depth:
                oldest = min(self._held)
                self._lost += oldest - self._next
                self._next = oldest
            else:
                break
        self._released += len(ready)
        return ready

    @property
    def stats(self) -> JitterStats:
        return JitterStats(self._received, self._released, self._late, self._lost)


@dataclass(frozen=True)
class DtmfDigit:
    digit: str
    duration_ms: float


class DtmfDecoder:
    """RFC 4733 telephone-events -> one digit per key press (the end packet is sent three times)."""

    def __init__(self, clock_rate_hz: int = 8_000) -> None:
        self.clock_rate_hz = clock_rate_hz
        self._finished: deque[int] = deque(maxlen=16)  # RTP timestamps of events already reported

    def push(self, packet: RtpPacket) -> DtmfDigit | None:
        if len(packet.payload) < 4:
            raise ProtocolError("invalid_rtp", "telephone-event payload is shorter than 4 bytes")
        event, flags, duration = struct.unpack_from("!BBH", packet.payload)
        if not flags & 0x80 or packet.timestamp in self._finished:
            return None  # not yet ended, or a repeat of an end packet
        self._finished.append(packet.timestamp)
        if event >= len(DTMF_EVENTS):
            return None  # a tone event other than a key (RFC 4733 §3.2 lists them)
        return DtmfDigit(DTMF_EVENTS[event], duration * 1000.0 / self.clock_rate_hz)


def build_dtmf_payload(digit: str, *, end: bool, duration_samples: int, volume_db: int = 10) -> bytes:
    """An RFC 4733 telephone-event payload (for tests and for sending digits)."""
    return struct.pack("!BBH", DTMF_EVENTS.index(digit), (0x80 if end else 0) | (volume_db & 0x3F), duration_samples)


class RtpPacer:
    """Outgoing 20 ms frames as RTP packets, released at real time plus a small lead.

    Pure: the caller passes the clock. `flush` drops everything queued at once (barge-in).
    With `silence_frame` set, the stream is continuous: the silence frame fills every 20 ms with no
    reply audio (phones and NATs expect media all the time, and the far end's recording then keeps
    wall-clock time; when the caller fell more than `max_catch_up_frames` behind, the missed silence
    is skipped). Without it, nothing is sent while idle; after a gap the RTP timestamp jumps by the
    gap and the marker bit starts the new talkspurt.
    """

    def __init__(self, ssrc: int, *, payload_type: int = PCMU_PAYLOAD_TYPE, lead_s: float = 0.04,
                 max_frames: int = 1500, sequence: int = 0, timestamp: int = 0,
                 silence_frame: bytes | None = None, max_catch_up_frames: int = 5) -> None:
        self.ssrc, self.payload_type, self.lead_s, self.max_frames = ssrc, payload_type, lead_s, max_frames
        self.silence_frame, self.max_catch_up_frames = silence_frame, max_catch_up_frames
        self._queue: deque[bytes] = deque()
        self._sequence = sequence
        self._timestamp = timestamp
        self._next_due_s: float | None = None  # send time of the next frame; None while idle
        self._last_sent_s: float | None = None
        self._marker_pending = False
        self.sent_audio_frames = 0  # queued (reply) frames sent so far, silence not counted

    def enqueue(self, frame: bytes) -> bool:
        """Queue one 20 ms frame; returns False (frame refused) when `max_frames` are queued."""
        if len(self._queue) >= self.max_frames:
            return False
        self._queue.append(frame)
        return True

    def due(self, now_s: float) -> list[bytes]:
        """Packets to send now: every queued frame whose time (minus the lead) has come."""
        if self.silence_frame is not None:
            return self._due_continuous(now_s, self.silence_frame)
        packets: list[bytes] = []
        if self._next_due_s is None and self._queue:
            self._start_talkspurt(now_s)
        while self._queue and self._next_due_s is not None and self._next_due_s - self.lead_s <= now_s:
            packets.append(self._packet(self._queue.popleft(), marker=not packets and self._marker_pending))
            self.sent_audio_frames += 1
            self._marker_pending = False
            self._last_sent_s = self._next_due_s
            self._next_due_s += FRAME_S
        if not self._queue and self._next_due_s is not None and self._next_due_s <= now_s:
            self._next_due_s = None  # played out: idle until the next frame
        return packets

    def _due_continuous(self, now_s: float, silence: bytes) -> list[bytes]:
        if self._next_due_s is None:
            self._next_due_s, self._marker_pending = now_s, True
        behind_frames = int((now_s - self._next_due_s) / FRAME_S)
        if behind_frames > self.max_catch_up_frames:  # the loop stalled: skip the silence missed
            skipped = behind_frames - self.max_catch_up_frames
            self._next_due_s += skipped * FRAME_S
            self._timestamp += skipped * SAMPLES_PER_FRAME
        packets: list[bytes] = []
        while True:
            if self._queue and self._next_due_s - self.lead_s <= now_s:
                frame = self._queue.popleft()
                self.sent_audio_frames += 1
            elif not self._queue and self._next_due_s <= now_s:
                frame = silence
            else:
                break
            packets.append(self._packet(frame, marker=self._marker_pending))
            self._marker_pending = False
            self._next_due_s += FRAME_S
        return packets

    def next_wake_s(self) -> float | None:
        """When `due` next has something to send (None: nothing queued)."""
        if self.silence_frame is not None:
            if self._next_due_s is None:
                return 0.0
            return self._next_due_s - (self.lead_s if self._queue else 0.0)
        if not self._queue:
            return None
        if self._next_due_s is None:
            return 0.0
        return self._next_due_s - self.lead_s

    def flush(self) -> int:
        """Drop every queued frame (barge-in); returns how many were dropped."""
        dropped = len(self._queue)
        self._queue.clear()
        return dropped

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    def _start_talkspurt(self, now_s: float) -> None:
        if self._last_sent_s is not None:  # keep the media clock running through the silence
            gap_frames = max(0, round((now_s - self._last_sent_s) / FRAME_S) - 1)
            self._timestamp += gap_frames * SAMPLES_PER_FRAME
        self._next_due_s = now_s
        self._marker_pending = True

    def _packet(self, frame: bytes, *, marker: bool) -> bytes:
        data = build_rtp(RtpPacket(self.payload_type, self._sequence, self._timestamp, self.ssrc, frame, marker))
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + len(frame)) & 0xFFFFFFFF
        return data
