"""A Python client of the realtime protocol (docs/protocol.md), built on `websockets`.

It streams audio at real-time pace like a microphone would, records every event with its arrival
time, and collects reply audio. `talk`, the benchmark and the integration tests all use it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from voice_pipeline.audio import float_to_pcm16, pcm16_to_float

FRAME_MS = 20


@dataclass
class Received:
    """What the server sent, with client-side arrival times (time.monotonic())."""

    events: list[tuple[float, dict]] = field(default_factory=list)
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict]:
        return [event for _, event in self.events if event.get("type") == kind]

    def first_time(self, kind: str, **match: Any) -> float | None:
        for t, event in self.events:
            if event.get("type") == kind and all(event.get(k) == v for k, v in match.items()):
                return t
        return None


class RealtimeClient:
    def __init__(self, url: str, max_size: int = 1 << 22, token: str | None = None) -> None:
        self.url = url
        # The server's bearer token (docs/security.md): given, or VP_SERVER_AUTH_TOKEN; none on an open loopback server.
        self._token = token if token is not None else os.environ.get("VP_SERVER_AUTH_TOKEN", "")
        self.received = Received()
        self.session: dict = {}
        self._max_size = max_size
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> "RealtimeClient":
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        self._ws = await websockets.connect(self.url, max_size=self._max_size, additional_headers=headers)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()

    async def start(self, **session: Any) -> dict:
        await self.send({"type": "session.start", "session": session})
        created = await self.wait_for("session.created")
        self.session = created["session"]
        return created

    async def send(self, event: dict) -> None:
        await self._ws.send(json.dumps(event))

    async def send_raw(self, data: str | bytes) -> None:
        await self._ws.send(data)

    async def send_audio(self, samples: np.ndarray) -> None:
        await self._ws.send(float_to_pcm16(samples))

    async def stream(self, samples: np.ndarray, rate_hz: int, t0: float | None = None) -> float:
        """Send audio in 20 ms frames at real-time pace; returns t0, the time of sample 0.

        Frame k holds samples [k*n, (k+1)*n) and goes out at t0 + (k+1)*20 ms, when a microphone
        would have captured all of it: sample i was "spoken" at t0 + i / rate_hz.
        """
        n = rate_hz * FRAME_MS // 1000
        t0 = time.monotonic() if t0 is None else t0
        for k in range(0, max(1, -(-len(samples) // n))):
            due = t0 + (k + 1) * FRAME_MS / 1000.0
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = samples[k * n : (k + 1) * n]
            if len(frame):
                await self.send_audio(frame)
        return t0

    async def stream_silence_until(self, rate_hz: int, done: asyncio.Event, timeout_s: float) -> None:
        """Keep a live microphone's silence flowing until `done` is set (or the timeout)."""
        n = rate_hz * FRAME_MS // 1000
        silence = np.zeros(n, dtype=np.float32)
        t0 = time.monotonic()
        k = 0
        while not done.is_set() and time.monotonic() - t0 < timeout_s:
            k += 1
            delay = t0 + k * FRAME_MS / 1000.0 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.send_audio(silence)

    async def wait_for(self, kind: str, timeout_s: float = 60.0, **match: Any) -> dict:
        """The first event of `kind` (already received or arriving) whose fields match."""

        def find() -> dict | None:
            for _, event in self.received.events:
                if event.get("type") == kind and all(event.get(k) == v for k, v in match.items()):
                    return event
            return None

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(find), timeout_s)
            return find()

    def reply_audio(self) -> np.ndarray:
        if not self.received.audio:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([samples for _, samples in self.received.audio])

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                t = time.monotonic()
                if isinstance(message, bytes):
                    self.received.audio.append((t, pcm16_to_float(message)))
                else:
                    self.received.events.append((t, json.loads(message)))
                async with self._changed:
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
