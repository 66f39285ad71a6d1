"""SIP transports that hand raw datagrams to the agent's gate and show it every reply sent.

`GatedTransport` is the seam: with `on_datagram` set, a datagram goes to it as bytes (the gate
parses, screens and catches everything); `on_reply` sees each response on its way out, so
retransmitted requests can be answered with the same response.

`UdpTransport` also runs on Python 3.11: aiosipua 0.7.1's UDP protocol asserts
`isinstance(transport, asyncio.DatagramTransport)`, which is false for the selector event loop's
datagram transport before Python 3.12, so every start logs an AssertionError. This one binds
the same way without the assertion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosipua import SipResponse
from aiosipua.transport import SipTransport, UdpSipTransport

log = logging.getLogger(__name__)

DatagramHandler = Callable[[bytes, tuple[str, int]], None]
ReplyObserver = Callable[[SipResponse], None]


class GatedTransport(SipTransport):
    """A SipTransport whose datagrams go to `on_datagram` and whose replies are shown to `on_reply`."""

    on_datagram: DatagramHandler | None = None
    on_reply: ReplyObserver | None = None

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.on_datagram is None:
            super()._dispatch(data, addr)  # aiosipua's own parse and dispatch
        else:
            self.on_datagram(data, addr)

    def send_reply(self, response: SipResponse) -> None:
        super().send_reply(response)
        if self.on_reply is not None:
            self.on_reply(response)


class _SipDatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpSipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int] | Any) -> None:
        self._owner._dispatch(data, (str(addr[0]), int(addr[1])))  # noqa: SLF001

    def error_received(self, exc: Exception) -> None:
        log.warning("sip udp error: %s", type(exc).__name__)


class UdpTransport(GatedTransport, UdpSipTransport):
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _SipDatagramProtocol(self), local_addr=self.local_addr
        )
        self._udp_transport = transport  # type: ignore[assignment]
        self.local_addr = (self.local_addr[0], int(transport.get_extra_info("sockname")[1]))
