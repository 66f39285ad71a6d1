"""Helpers for the browser tests: a real server in a subprocess, a spoken question, Chromium's flags."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np

from voice_pipeline.audio import write_wav

CHROMIUM = "/usr/bin/chromium"
REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("voice-pipeline")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "voice_pipeline.cli"]
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
        process = subprocess.Popen(server_command(port), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
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
    (a second question) far after the first turn has finished.
    """
    from piper import PiperVoice

    from voice_pipeline.engines.registry import piper_voice

    model, config = piper_voice("en_US-joe-medium")
    voice = PiperVoice.load(model, config_path=config)
    speech = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text)])
    rate_hz = voice.config.sample_rate
    silence = lambda seconds: np.zeros(int(seconds * rate_hz), dtype=np.float32)  # noqa: E731
    write_wav(path, np.concatenate([silence(lead_s), speech, silence(tail_s)]), rate_hz)
    return path


def chromium_args(fake_audio: Path) -> list[str]:
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
        f"--use-file-for-fake-audio-capture={fake_audio}",
    ]


def chromium_missing_reason() -> str | None:
    """Why the browser test cannot run here: a missing install step, said out loud (never a skip)."""
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (Debian package chromium)"
    return None
