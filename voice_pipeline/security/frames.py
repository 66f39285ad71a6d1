"""RFC 6455 §5.1 for aiohttp: a server MUST close the connection on a client frame that is not masked.

aiohttp (3.14) accepts unmasked client frames and has no option to refuse them. So, once a socket
has been upgraded, a small protocol sits between its transport and aiohttp's protocol (asyncio's
public `transport.set_protocol`): it follows the frame boundaries in the byte stream, forwards
every byte untouched, and on the first unmasked frame sends Close 1002 and closes the connection.
`FrameMaskCheck` is the pure part: bytes in, a verdict out.
"""

from __future__ import annotations

import asyncio
import logging
import struct

log = logging.getLogger("voice_pipeline.security")
REASON = b"unmasked frame"
CLOSE_1002 = bytes([0x88, 2 + len(REASON)]) + struct.pack("!H", 1002) + REASON  # an unmasked server Close frame


class FrameMaskCheck:
    """Follows client frame boundaries across chunks; `feed` is True once a frame without a mask starts."""

    def __init__(self) -> None:
        self._header = bytearray()  # the header of the frame being read (2 to 14 bytes)
        self._skip = 0  # payload bytes of the current frame still to pass

    def feed(self, data: bytes) -> bool:
        position = 0
        while position < len(data):
            if self._skip:
                step = min(self._skip, len(data) - position)
                self._skip -= step
                position += step
                continue
            self._header.append(data[position])
            position += 1
            if len(self._header) == 2 and not self._header[1] & 0x80:
                return True
            if len(self._header) >= 2 and len(self._header) == _masked_header_size(self._header[1]):
                self._skip = _payload_length(self._header)
                self._header.clear()
        return False


def _masked_header_size(second_byte: int) -> int:
    length_code = second_byte & 0x7F
    extended = 2 if length_code == 126 else 8 if length_code == 127 else 0
    return 2 + extended + 4  # + the 4-byte masking key


def _payload_length(header: bytearray) -> int:
    length_code = header[1] & 0x7F
    if length_code == 126:
        return struct.unpack("!H", header[2:4])[0]
    if length_code == 127:
        return struct.unpack("!Q", header[2:10])[0]
    return length_code


class MaskEnforcer(asyncio.Protocol):
    """Between an upgraded connection's transport and aiohttp's protocol: forwards everything until an
    unmasked client frame arrives, then closes with 1002 (that chunk is not forwarded)."""

    def __init__(self, transport: asyncio.Transport, inner: asyncio.Protocol) -> None:
        self._transport = transport
        self._inner = inner
        self._check = FrameMaskCheck()
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._check.feed(data):
            self._refused = True
            log.info("closed a WebSocket from %s: unmasked client frame (RFC 6455 5.1)",
                     self._transport.get_extra_info("peername"))
            self._transport.write(CLOSE_1002)
            self._transport.close()
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def enforce_masking(transport: asyncio.Transport | None) -> None:
    """Put a MaskEnforcer in front of the transport's protocol (call before the 101 response is sent)."""
    if transport is None or isinstance(transport.get_protocol(), MaskEnforcer):
        return
    transport.set_protocol(MaskEnforcer(transport, transport.get_protocol()))
