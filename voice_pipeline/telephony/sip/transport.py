"""UDP transport for aiosipua that also runs on Python 3.11.

aiosipua 0.7.1's UDP protocol asserts `isinstance(transport, asyncio.DatagramTransport)`, which is
false for the selector event loop's datagram transport before Python 3.12, so every start logs an
AssertionError. This one binds the same way without the assertion.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosipua.transport import UdpSipTransport

log = logging.getLogger(__name__)


class _SipDatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpSipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        self._owner._dispatch(data, (str(addr[0]), int(addr[1])))  # noqa: SLF001

    def error_received(self, exc: Exception) -> None:
        log.warning("sip udp error: %s", exc)


class UdpTransport(UdpSipTransport):
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _SipDatagramProtocol(self), local_addr=self.local_addr
        )
        self._udp_transport = transport  # type: ignore[assignment]
        self.local_addr = (self.local_addr[0], int(transport.get_extra_info("sockname")[1]))
