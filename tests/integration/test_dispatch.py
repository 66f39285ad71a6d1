"""`serve` with two workers. `server.balance = "sessions"`: the supervisor hands each connection to
the worker with the fewest sessions (app/dispatch.py), so four sessions are two and two, whatever
the clients' ports hash to; and a session stays with its worker while the other worker is killed
and started again. `"kernel"` (the default): the workers bind the port themselves (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from .conftest import start_server, stop_server
from .test_llm_serving import _children, _cmdline

pytestmark = pytest.mark.integration


def _established(port: int) -> set[int]:
    """Socket inodes of the TCP connections established on local `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes


def _sessions_per_worker(workers: list[int], port: int) -> dict[int, int]:
    inodes = _established(port)
    count: collections.Counter[int] = collections.Counter()
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                count[pid] += 1
    return {pid: count[pid] for pid in workers}


async def _open_sessions(url: str, n: int, http: aiohttp.ClientSession) -> list[aiohttp.ClientWebSocketResponse]:
    sockets = []
    for _ in range(n):
        ws = await http.ws_connect(url)
        await ws.send_json({"type": "session.start"})
        assert (await ws.receive_json(timeout=30))["type"] == "session.created"
        sockets.append(ws)
    return sockets


async def _both_workers_serving(server) -> list[int]:
    """The two worker processes, once both answer on the port (16 /health requests name both)."""
    workers = sorted(p for p in _children(server.process.pid) if "--worker" in _cmdline(p))
    assert len(workers) == 2
    deadline = time.monotonic() + 120
    while len({json.loads(server.get("/health")[1])["pid"] for _ in range(16)}) < 2:
        assert time.monotonic() < deadline, "both workers serve the port"
        await asyncio.sleep(0.2)
    return workers


async def test_sessions_are_spread_evenly_and_survive_the_other_worker_s_crash(tmp_path):
    server = start_server(tmp_path, VP_SERVER_WORKERS="2", VP_SERVER_BALANCE="sessions",
                          VP_TELEPHONY_SIP_ENABLED="false")
    try:
        workers = await _both_workers_serving(server)
        async with aiohttp.ClientSession() as http:
            sockets = await _open_sessions(server.ws, 4, http)
            assert sorted(_sessions_per_worker(workers, server.port).values()) == [2, 2]
            # Two more while one worker holds three: both go to the other one
            await sockets.pop().close()
            deadline = time.monotonic() + 10
            while sum(_sessions_per_worker(workers, server.port).values()) != 3:
                assert time.monotonic() < deadline, "the closed session's socket is gone"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # its worker has told the supervisor its count on closing it
            sockets += await _open_sessions(server.ws, 2, http)
            assert sorted(_sessions_per_worker(workers, server.port).values()) == [2, 3]
            # A crash of one worker: the other's sessions go on, new ones go to the one left
            per_worker = _sessions_per_worker(workers, server.port)
            victim = max(workers, key=lambda pid: per_worker[pid])
            os.kill(victim, signal.SIGSEGV)
            survivor = next(pid for pid in workers if pid != victim)
            await asyncio.sleep(0.5)
            more = await _open_sessions(server.ws, 1, http)
            assert _sessions_per_worker([survivor], server.port)[survivor] == per_worker[survivor] + 1, (
                "the survivor keeps its sessions and takes the new one")
            for ws in sockets + more:
                await ws.close()
        assert "died (SIGSEGV)" in server.log_path.read_text()
    finally:
        stop_server(server)
    assert server.process.returncode == 0


async def test_kernel_balance_has_every_worker_bind_the_port_itself(tmp_path):
    server = start_server(tmp_path, VP_SERVER_WORKERS="2", VP_TELEPHONY_SIP_ENABLED="false")  # balance: kernel
    try:
        workers = await _both_workers_serving(server)
        async with aiohttp.ClientSession() as http:
            sockets = await _open_sessions(server.ws, 4, http)
            assert sum(_sessions_per_worker(workers, server.port).values()) == 4
            for ws in sockets:
                await ws.close()
    finally:
        stop_server(server)
    assert server.process.returncode == 0
