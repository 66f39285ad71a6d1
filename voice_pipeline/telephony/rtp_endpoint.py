"""One call's RTP socket: the caller's audio in (jitter-buffered), DTMF, and paced reply audio out.

Link policy: incoming audio frames are bounded (`max_audio_frames`; when full the oldest is
dropped and counted); DTMF digits are never dropped; outgoing frames are bounded by the pacer.
Packets from hosts other than the negotiated peer's (`allowed_hosts`) are ignored and counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from collections.abc import Callable

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.mulaw import MULAW_SILENCE
from voice_pipeline.telephony.rtp import (
    PCMU_PAYLOAD_TYPE,
    SAMPLES_PER_FRAME,
    DtmfDecoder,
    JitterBuffer,
    JitterStats,
    RtpPacer,
    parse_rtp,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RtpAudio:
    audio_mulaw: bytes  # one packet's payload, normally 20 ms (160 bytes)


@dataclass(frozen=True)
class RtpDtmf:
    digit: str
    duration_ms: float


@dataclass(frozen=True)
class RtpStats:
    jitter: JitterStats
    invalid_packets: int
    dropped_audio_frames: int  # incoming frames dropped because the reader fell behind
    sent_packets: int
    flushed_frames: int  # outgoing frames dropped by barge-in flushes
    foreign_packets: int = 0  # from a host outside allowed_hosts, ignored


class RtpEndpoint(asyncio.DatagramProtocol):
    """Symmetric RTP: sends to the address from the SDP until the peer's packets show another.

    `allowed_hosts` (None: any) are the hosts whose packets count, e.g. the SDP's address and
    the SIP peer's: their audio may move the outgoing stream to another port (a NAT), anyone
    else's is ignored, so a stranger can neither inject audio nor take the reply stream.
    With `send_silence` (the default) the outgoing stream never pauses: silence fills the time
    between replies, as phones, trunks and NATs expect.
    """

    def __init__(self, remote_addr: tuple[str, int] | None = None, *, audio_payload_type: int = PCMU_PAYLOAD_TYPE,
                 dtmf_payload_type: int | None = None, jitter_depth: int = 3, max_audio_frames: int = 50,
                 lead_s: float = 0.04, send_silence: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.remote_addr = remote_addr
        self.allowed_hosts: frozenset[str] | None = None
        self.audio_payload_type = audio_payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self._clock = clock
        self._jitter = JitterBuffer(jitter_depth)
        self._dtmf = DtmfDecoder()
        silence = bytes([MULAW_SILENCE]) * SAMPLES_PER_FRAME if send_silence else None
        self._pacer = RtpPacer(random.getrandbits(32), payload_type=audio_payload_type, lead_s=lead_s,
                               sequence=random.getrandbits(16), timestamp=random.getrandbits(32),
                               silence_frame=silence)
        self._audio: deque[RtpAudio] = deque()
        self._digits: deque[RtpDtmf] = deque()
        self._max_audio_frames = max_audio_frames
        self._readable = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        self._invalid = self._dropped = self._sent = self._flushed = self._foreign = 0

    @classmethod
    async def open(cls, host: str, port: int = 0, **kwargs: object) -> RtpEndpoint:
        """Bind a UDP socket (port 0: any free port) and start the sender."""
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(lambda: cls(**kwargs), local_addr=(host, port))  # type: ignore[arg-type]
        endpoint._sender = asyncio.create_task(endpoint._send_loop(), name="rtp-sender")
        return endpoint

    @property
    def local_port(self) -> int:
        assert self._transport is not None, "RTP endpoint is not bound"
        return int(self._transport.get_extra_info("sockname")[1])

    # --- incoming ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.allowed_hosts is not None and addr[0] not in self.allowed_hosts:
            self._foreign += 1
            return
        try:
            packet = parse_rtp(data)
        except ProtocolError:
            self._invalid += 1
            return
        if packet.payload_type == self.audio_payload_type:
            if self.remote_addr != addr:
                self.remote_addr = addr  # symmetric RTP: answer where the audio comes from
            for ready in self._jitter.push(packet):
                self._push_audio(RtpAudio(ready.payload))
        elif packet.payload_type == self.dtmf_payload_type:
            try:
                digit = self._dtmf.push(packet)
            except ProtocolError:
                self._invalid += 1
                return
            if digit is not None:
                self._digits.append(RtpDtmf(digit.digit, digit.duration_ms))
                self._readable.set()
        # other payload types (comfort noise, an unnegotiated codec) are ignored

    def _push_audio(self, frame: RtpAudio) -> None:
        if len(self._audio) >= self._max_audio_frames:
            self._audio.popleft()
            self._dropped += 1
        self._audio.append(frame)
        self._readable.set()

    async def read(self) -> RtpAudio | RtpDtmf | None:
        """The next DTMF digit or audio frame; None once the endpoint is closed."""
        while not (self._digits or self._audio):
            if self._closed:
                return None
            self._readable.clear()
            await self._readable.wait()
        return self._digits.popleft() if self._digits else self._audio.popleft()

    # --- outgoing ---------------------------------------------------------------------------

    def send_audio(self, frame_mulaw: bytes) -> bool:
        """Queue one 20 ms mu-law frame; False when the outgoing queue is full."""
        accepted = self._pacer.enqueue(frame_mulaw)
        self._wake_sender.set()
        return accepted

    def flush_audio(self) -> int:
        """Barge-in: drop every reply frame not yet sent; returns how many."""
        dropped = self._pacer.flush()
        self._flushed += dropped
        self._wake_sender.set()
        return dropped

    @property
    def queued_audio_ms(self) -> float:
        return self._pacer.queued_frames * 20.0

    @property
    def sent_audio_ms(self) -> float:
        """Reply audio sent so far (silence not counted). On a barge-in, what the caller heard of a
        reply is about (sent_audio_ms now - at the reply's start) - lead_s - the phone's jitter buffer."""
        return self._pacer.sent_audio_frames * 20.0

    def pump(self, now_s: float) -> int:
        """Send every packet that is due at `now_s`; returns how many were sent."""
        packets = self._pacer.due(now_s)
        if self._transport is not None and self.remote_addr is not None:
            for packet in packets:
                self._transport.sendto(packet, self.remote_addr)
            self._sent += len(packets)
        return len(packets)

    async def _send_loop(self) -> None:
        try:
            await self._pace()
        except Exception as exc:  # the call goes on without our audio rather than with a dead task
            log.error("rtp sender stopped: %s", type(exc).__name__)

    async def _pace(self) -> None:
        while not self._closed:
            wake_s = self._pacer.next_wake_s()
            delay_s = None if wake_s is None else wake_s - self._clock()
            if delay_s is None or delay_s > 0:
                self._wake_sender.clear()
                try:
                    async with asyncio.timeout(delay_s):  # not wait_for: it can swallow a cancellation on 3.11
                        await self._wake_sender.wait()
                except TimeoutError:
                    pass
                continue
            self.pump(self._clock())

    # --- lifetime ---------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        for packet in self._jitter.flush():
            self._push_audio(RtpAudio(packet.payload))
        self._readable.set()
        if self._sender is not None:
            self._sender.cancel()
            try:
                await self._sender
            except asyncio.CancelledError:
                if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
        if self._transport is not None:
            self._transport.close()

    @property
    def stats(self) -> RtpStats:
        return RtpStats(self._jitter.stats, self._invalid, self._dropped, self._sent, self._flushed,
                        self._foreign)
