"""Helpers for the browser tests: a real server in a subprocess, a spoken question, Chromium's flags."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
from aiohttp import WSMsgType, web

from voice_pipeline.audio import write_wav

from .conftest import TEST_SERVER_ENV

CHROMIUM = "/usr/bin/chromium"
REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("voice-pipeline")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "voice_pipeline.app.cli"]
    return [*base, "serve", "--host", "127.0.0.1", "--port", str(port)]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


@contextlib.contextmanager
def running_server(log_path: Path) -> Iterator[str]:
    """`voice-pipeline serve` on a free loopback port; yields http://127.0.0.1:PORT once /ready is 200."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        environ = {**os.environ, **TEST_SERVER_ENV}
        process = subprocess.Popen(server_command(port), cwd=REPO_ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _ready(f"{base_url}/ready"):
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server was not ready in {READY_TIMEOUT_S} s: {log_path.read_text()[-2000:]}")
                time.sleep(0.25)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def spoken_question(text: str, path: Path, lead_s: float, tail_s: float) -> Path:
    """Piper (the embedded voice) speaks `text` into a 16-bit WAV with silence around it.

    Chromium's fake microphone loops the file: the long tail of silence keeps the second loop
    (a second question) far after the first turn has finished. Spoken with piper's noise off, so
    every run hears the same question (with the noise on, whisper tiny once heard "the capital of
    friends" in CI).
    """
    from voice_pipeline.bench.corpus import clear_speech

    speech, rate_hz = clear_speech(text)
    silence = lambda seconds: np.zeros(int(seconds * rate_hz), dtype=np.float32)  # noqa: E731
    write_wav(path, np.concatenate([silence(lead_s), speech, silence(tail_s)]), rate_hz)
    return path


def chromium_args(fake_audio: Path | None) -> list[str]:
    """Debian's Chromium, headless, offline, with a fake microphone (a WAV file, or its beeps if None)."""
    file_arg = [f"--use-file-for-fake-audio-capture={fake_audio}"] if fake_audio else []
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        *file_arg,
    ]


def chromium_missing_reason() -> str | None:
    """Why the browser test cannot run here: a missing install step, said out loud (never a skip)."""
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian package chromium)"
    return None


class ScriptedServer:
    """A stand-in for the pipeline on loopback: serves client/web and a scripted /v1/realtime.

    It answers `session.start` with `session.created` and records everything the page sends;
    the test thread pushes events, audio or a disconnect with send(), send_audio() and drop().
    """

    def __init__(self, output_rate_hz: int = 16000) -> None:
        self.output_rate_hz = output_rate_hz
        self.received: list[dict | int] = []  # JSON events, or the byte length of a binary frame
        self.connections = 0
        self._ws = None
        self._open: set = set()
        self._loop = None
        self._runner = None

    def __enter__(self) -> str:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        port = self._call(self._start())
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)

    def events(self, kind: str) -> list[dict]:
        return [item for item in list(self.received) if isinstance(item, dict) and item.get("type") == kind]

    def frames(self) -> list[int]:
        return [item for item in list(self.received) if isinstance(item, int)]

    def send(self, event: dict) -> None:
        self._call(self._ws.send_json({"event_id": "e", "t_ms": 0.0, **event}))

    def send_audio(self, pcm16: bytes) -> None:
        self._call(self._ws.send_bytes(pcm16))

    def drop(self) -> None:
        self._call(self._ws.close(code=1011, message=b"scripted drop"))

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _stop(self) -> None:
        for ws in list(self._open):
            await ws.close(code=1001, message=b"test over")
        await self._runner.cleanup()

    async def _start(self) -> int:
        web_dir = REPO_ROOT / "client" / "web"
        app = web.Application()

        async def index(_request):
            return web.FileResponse(web_dir / "index.html")

        app.router.add_get("/", index)
        app.router.add_static("/static/", web_dir)
        app.router.add_get("/v1/realtime", self._realtime)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    async def _realtime(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self._open.add(ws)
        self.connections += 1
        try:
            await self._serve(ws)
        finally:
            self._open.discard(ws)
        return ws

    async def _serve(self, ws) -> None:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                self.received.append(len(message.data))
                continue
            event = json.loads(message.data)
            self.received.append(event)
            if event["type"] == "session.start":
                session = {"output_audio_format": {"encoding": "pcm16", "sample_rate": self.output_rate_hz},
                           "turn_detection": {"type": "server_vad"}}
                await ws.send_json({"type": "session.created", "event_id": "e", "t_ms": 0.0, "session": session})


def wait_until(condition, timeout_s: float = 20.0) -> None:
    """Poll a condition on the test's side (the scripted server's records)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
