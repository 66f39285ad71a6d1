"""Several workers on one port, `server.balance = "sessions"`: each new connection goes to the
ready worker with the fewest sessions.

With SO_REUSEPORT (`"kernel"`, the default) the kernel picks a worker by a hash of the
connection's addresses, that is at random: 4 sessions over 2 workers can be 4 and 0, and a worker
at its `max_sessions` refuses a session that another has room for. Here the supervisor owns the
listening socket: its `Dispatcher` accepts each connection and hands the socket (SCM_RIGHTS over a
Unix socket pair per worker) to the ready worker with the fewest sessions, counting those handed
over and not yet received; equal ones in turn. Each worker tells it its session count (and how
many connections it has received) whenever either changes (`ConnectionReceiver`, in the worker's
event loop, which serves the socket as if it had accepted it itself).

Not the default because even spreading measured slower, not faster: each worker batches its own
sessions' VAD and STT, and at 6 sessions on 2 cores with 2 workers the even spread took p50 1.26-1.36
s against 0.92-0.93 with SO_REUSEPORT (docs/scaling.md, "All the cores").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from typing import Callable

log = logging.getLogger("voice_pipeline.app.dispatch")
ENV_DISPATCH_FD = "VOICE_PIPELINE_WORKER_DISPATCH_FD"  # not VP_*: set by the supervisor
REPORT = struct.Struct("!II")  # worker -> supervisor: connections received so far, sessions now
SEND_TIMEOUT_S = 1.0  # a worker whose loop does not take a socket by then is skipped for this one


def least_loaded(loads: list[int | None], start: int) -> int | None:
    """The index of the smallest load (None: not taking connections), the first from `start` on
    (wrapping) among equals, so equal workers take turns; None when none is taking any."""
    best = None
    for offset in range(len(loads)):
        index = (start + offset) % len(loads)
        load = loads[index]
        if load is not None and (best is None or load < loads[best]):  # type: ignore[operator]
            best = index
    return best


class _Channel:
    """The supervisor's end of one worker's socket pair, and what that worker last reported."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ready = False
        self.passed = 0  # sockets handed over
        self.received = 0  # ... of which the worker reported receiving
        self.sessions = 0

    def load(self) -> int | None:
        in_flight = (self.passed - self.received) % 2**32  # the worker counts modulo 2**32
        return self.sessions + in_flight if self.ready else None


class Dispatcher:
    """Accepts on `listener` and hands each connection to a worker (see the module's docstring)."""

    def __init__(self, listener: socket.socket, workers: int) -> None:
        self.listener = listener
        listener.settimeout(0.5)  # the accept loop looks up now and then: close() ends it
        self._channels: list[_Channel | None] = [None] * workers
        self._lock = threading.Condition()
        self._next = 0
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, name="dispatch-accept", daemon=True)

    def start(self) -> None:
        self._acceptor.start()

    def attach(self, index: int) -> socket.socket:
        """A new socket pair for worker `index` (started or started again); returns the worker's
        end, to be inherited by its process (and closed here once it has started)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.settimeout(SEND_TIMEOUT_S)
        with self._lock:
            old, self._channels[index] = self._channels[index], _Channel(ours)
        if old is not None:
            old.sock.close()
        threading.Thread(target=self._read_reports, args=(index, self._channels[index]),
                         name=f"dispatch-reports-{index}", daemon=True).start()
        return theirs

    def set_ready(self, index: int) -> None:
        """Worker `index` serves: it takes connections from now on."""
        with self._lock:
            channel = self._channels[index]
            if channel is not None:
                channel.ready = True
                self._lock.notify_all()

    def detach(self, index: int) -> None:
        """Worker `index` has exited: no more connections for it until it is attached again."""
        with self._lock:
            channel, self._channels[index] = self._channels[index], None
        if channel is not None:
            channel.sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self.listener.close()
        for index in range(len(self._channels)):
            self.detach(index)

    def loads(self) -> list[int | None]:
        with self._lock:
            return [None if c is None else c.load() for c in self._channels]

    def _read_reports(self, index: int, channel: _Channel) -> None:
        while True:
            try:
                data = channel.sock.recv(REPORT.size)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) != REPORT.size:  # end of file: the worker has gone
                return
            with self._lock:
                channel.received, channel.sessions = REPORT.unpack(data)

    def _accept_loop(self) -> None:
        while True:
            with self._lock:  # nothing is accepted before a worker serves: clients wait in the backlog
                while not self._closed and all(load is None for load in self._loads_locked()):
                    self._lock.wait()
                if self._closed:
                    return
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._closed:
                    return
                log.warning("accept failed (%s); retrying", exc)  # e.g. out of file descriptors
                time.sleep(0.1)
                continue
            with conn:
                self._hand_over(conn)

    def _loads_locked(self) -> list[int | None]:
        return [None if c is None else c.load() for c in self._channels]

    def _hand_over(self, conn: socket.socket) -> None:
        tried: set[int] = set()
        while True:
            with self._lock:
                loads = [None if i in tried else load for i, load in enumerate(self._loads_locked())]
                index = least_loaded(loads, self._next)
                if index is None:  # every worker gone or stuck: the client sees the socket close
                    log.warning("no worker took a connection; closed it")
                    return
                channel = self._channels[index]
                assert channel is not None
                channel.passed += 1
                self._next = index + 1
            try:
                socket.send_fds(channel.sock, [b"c"], [conn.fileno()])
                return
            except OSError as exc:
                with self._lock:
                    channel.passed -= 1
                log.warning("worker %d did not take a connection (%s); trying another", index, type(exc).__name__)
                tried.add(index)


class ConnectionReceiver:
    """The worker's end: sockets from the supervisor, served by `protocol_factory` in this loop."""

    def __init__(self, fd: int, protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(False)
        self._factory = protocol_factory
        self._received = 0
        self._sessions = 0
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._receive)
        self._report()

    def sessions_changed(self, count: int) -> None:
        self._sessions = count
        self._report()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()

    def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._sock, 1, 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the supervisor has gone (this worker dies with it)
                loop.remove_reader(self._sock.fileno())
                break
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                self._received += 1
                task = loop.create_task(self._serve(conn))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._report()

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self._factory, conn)
        except OSError:  # the client left before we got to it
            conn.close()

    def _report(self) -> None:
        with contextlib.suppress(OSError):  # a full buffer or a gone supervisor: the next one says it
            self._sock.send(REPORT.pack(self._received % 2**32, self._sessions % 2**32))
