"""Beyond one process: HAProxy + two workers + one shared llama.cpp server (llama-server, two
parallel slots) on loopback, started by scripts/haproxy-demo.sh. Sessions spread over both workers; a worker drained with SIGTERM finishes
the turn in progress, and the sessions that come after it go to the other worker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from voice_pipeline_client.realtime import RealtimeClient

from .conftest import REPO, TEST_SERVER_ENV, free_port

pytestmark = pytest.mark.integration
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
if not os.path.exists(HAPROXY):  # not skipped: a missing install step must fail loudly
    raise RuntimeError("haproxy is not installed: run scripts/install-system-deps.sh")


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Demo:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "demo"
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(REPO / "scripts" / "haproxy-demo.sh"), "--port", str(self.port), "--workers", "2",
             "--llm", "server", "--llm-slots", "2", "--dir", str(self.dir)],
            cwd=REPO, env={**os.environ, **TEST_SERVER_ENV, "VP_SERVER_LOG_LEVEL": "INFO"},
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "demo.log").open("w"))
        self.ws = f"ws://127.0.0.1:{self.port}/v1/realtime"
        self.stopped: set[str] = set()  # processes the test stopped on purpose

    def pids(self) -> dict[str, tuple[int, int]]:
        if not (self.dir / "pids").exists():
            return {}
        rows = (line.split() for line in (self.dir / "pids").read_text().splitlines() if line.strip())
        return {name: (int(pid), int(port)) for name, pid, port in rows}

    def worker_ready(self, name: str) -> tuple[int, dict]:
        return _get(f"http://127.0.0.1:{self.pids()[name][1]}/ready")

    def sessions(self) -> dict[str, int]:
        """Sessions each worker holds (0 for one that is gone)."""
        out = {}
        for name in ("worker1", "worker2"):
            try:
                out[name] = self.worker_ready(name)[1].get("sessions", 0)
            except OSError:
                out[name] = 0
        return out

    def wait_until(self, probe, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the demo stopped:\n{self.logs()}"
            dead = [name for name, (pid, _) in self.pids().items() if name not in self.stopped and not _alive(pid)]
            assert not dead, f"{dead} exited:\n{self.logs()}"
            try:
                if value := probe():
                    return value
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"{what} not within {timeout_s} s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def _say(client: RealtimeClient, text: str) -> None:
    await client.send({"type": "conversation.item.create",
                       "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


async def test_sessions_spread_over_two_workers_and_a_drained_worker_loses_no_turn(tmp_path):
    demo = Demo(tmp_path)
    try:
        demo.wait_until(lambda: all(demo.worker_ready(w)[0] == 200 for w in ("worker1", "worker2")), 240,
                        "both workers ready")
        demo.wait_until(lambda: _get(f"http://127.0.0.1:{demo.port}/ready")[0] == 200, 30, "HAProxy up")
        await asyncio.sleep(1.0)  # HAProxy's checks (rise 2 x 300 ms) have seen both workers healthy

        # Four sessions at once through HAProxy: leastconn puts two on each worker.
        clients = [RealtimeClient(demo.ws) for _ in range(4)]
        for client in clients:
            await client.__aenter__()
            await client.start()
        try:
            def four_registered() -> dict[str, int] | None:
                sessions = demo.sessions()
                return sessions if sum(sessions.values()) == 4 else None

            spread = demo.wait_until(four_registered, 30, "four sessions registered")
            assert spread == {"worker1": 2, "worker2": 2}
            await _say(clients[0], "Hi.")
            assert (await clients[0].wait_for("response.done", 120))["status"] == "completed"
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)
        demo.wait_until(lambda: sum(demo.sessions().values()) == 0, 30, "sessions closed")

        # A turn in progress on one worker; SIGTERM that worker: the reply completes on the same socket.
        async with RealtimeClient(demo.ws) as client:
            await client.start()
            busy = demo.wait_until(lambda: next((n for n, c in demo.sessions().items() if c), None), 30,
                                   "the session is on a worker")
            other = "worker2" if busy == "worker1" else "worker1"
            await _say(client, "Tell me about the moon in a few sentences.")
            await client.wait_for("response.created", 120)
            demo.stopped.add(busy)
            os.kill(demo.pids()[busy][0], signal.SIGTERM)
            done = await client.wait_for("response.done", 120)
            assert done["status"] == "completed" and done["text"]
        assert not [e for e in client.received.of_type("error")], "the drained worker's session saw no error"

        # HAProxy has seen /ready go 503 (draining) or the worker gone: new sessions go to the other one.
        def left_ready() -> bool:
            try:
                return demo.worker_ready(busy)[0] != 200  # 503: draining
            except OSError:
                return True  # refused: the worker finished draining and exited

        demo.wait_until(left_ready, 30, "the drained worker leaves /ready")
        await asyncio.sleep(1.0)
        async with RealtimeClient(demo.ws) as client:
            await client.start()
            assert demo.wait_until(lambda: demo.sessions()[other] == 1, 30, "the new session on the other worker")
            await _say(client, "Hi.")
            assert (await client.wait_for("response.done", 120))["status"] == "completed"
        pid = demo.pids()[busy][0]
        demo.wait_until(lambda: not _alive(pid), 60, "the drained worker exited")
    finally:
        demo.stop()
    assert demo.process.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (the script has not reaped it yet) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
