"""Real models, a real server on loopback: shared fixtures for the integration tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from voice_pipeline.audio import write_wav

REPO = Path(__file__).resolve().parents[2]
VOICE_PIPELINE = str(Path(sys.executable).with_name("voice-pipeline"))
# Test servers share 2 cores with the test itself (and, on a developer's machine, with anything
# else): latency budgets are tested on purpose in unit and cascade tests, so here they are wide
# enough that a slow machine never turns a real answer into the cascade's apology.
TEST_SERVER_ENV = {"VP_BUDGETS_STT_FINAL_MS": "60000", "VP_BUDGETS_LLM_FIRST_TOKEN_MS": "60000"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, port: int, process: subprocess.Popen, log_path: Path) -> None:
        self.port, self.process, self.log_path = port, process, log_path
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/v1/realtime"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def start_server(tmp_dir: Path, **env: str) -> RunningServer:
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    environ = {**os.environ, **TEST_SERVER_ENV, "VP_SERVER_PORT": str(port), **env}
    process = subprocess.Popen(
        [VOICE_PIPELINE, "serve", "--host", "127.0.0.1"], env=environ, cwd=REPO,
        stdout=log_path.open("w"), stderr=subprocess.STDOUT,
    )
    server = RunningServer(port, process, log_path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if server.get("/ready")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"server not ready in time:\n{log_path.read_text()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("server"), VP_SERVER_MAX_SESSIONS="4")
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def piper_say(tmp_path_factory):
    """Speak a sentence with the embedded Piper voice into a WAV (with silence around it): the same
    audio for the same text in every run (Piper's noise off, bench/corpus.py clear_speech)."""
    from voice_pipeline.bench.corpus import clear_speech

    folder = tmp_path_factory.mktemp("speech")

    def say(text: str, lead_s: float = 0.5, tail_s: float = 0.3, gain: float = 0.6) -> Path:
        speech, rate = clear_speech(text)
        speech = speech * gain
        audio = np.concatenate([np.zeros(int(lead_s * rate)), speech, np.zeros(int(tail_s * rate))]).astype(np.float32)
        path = folder / (text.lower().replace(" ", "_").strip("?.!,")[:40] + ".wav")
        write_wav(path, audio, rate)
        return path

    return say
