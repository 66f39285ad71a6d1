"""A scripted Twilio Media Streams far end: it is the phone network side of a `<Connect><Stream>` call.

Follows Twilio's documented message shapes: `connected`, `start`, `media` (base64 mu-law, 8 kHz,
one 20 ms frame per message, sent at real-time pace), `mark` and `stop`. What the server sends back
goes into a play-out buffer that a 20 ms tick "plays" at real time; a `mark` is echoed only once
all audio before it has been played; `clear` drops the buffer (and the marks still in it).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import time
from dataclasses import dataclass, field

import numpy as np
import websockets

from voice_pipeline.audio import resample
from voice_pipeline.telephony.mulaw import float_to_mulaw, mulaw_to_float

RATE_HZ = 8_000
FRAME_BYTES = 160  # 20 ms at 8 kHz
FRAME_S = 0.02
STREAM_SID = "MZ00000000000000000000000000000001"
CALL_SID = "CA00000000000000000000000000000001"


def speech_end_s(audio_8k: np.ndarray, threshold: float = 0.01) -> float:
    """Seconds from the start of `audio_8k` to the end of its last 20 ms frame with speech in it."""
    frames = len(audio_8k) // FRAME_BYTES
    loud = [k for k in range(frames) if np.sqrt(np.mean(audio_8k[k * FRAME_BYTES:(k + 1) * FRAME_BYTES] ** 2)) > threshold]
    return (loud[-1] + 1) * FRAME_S if loud else 0.0


def first_sound_s(audio_8k: np.ndarray, after_s: float, threshold: float = 0.01) -> float | None:
    """Seconds from the start of `audio_8k` to the first 20 ms frame with sound at or after `after_s`."""
    for k in range(int(after_s / FRAME_S), len(audio_8k) // FRAME_BYTES):
        if np.sqrt(np.mean(audio_8k[k * FRAME_BYTES:(k + 1) * FRAME_BYTES] ** 2)) > threshold:
            return k * FRAME_S
    return None


@dataclass
class Heard:
    """What the far end received and played, with arrival times (time.monotonic())."""

    media: list[tuple[float, bytes]] = field(default_factory=list)  # every media frame received
    played: list[bytes] = field(default_factory=list)  # frames actually played (not cleared)
    marks_received: list[tuple[float, str]] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    speech_sent: dict[str, float] = field(default_factory=dict)  # say() key -> when its speech's last frame went
    log: list[tuple[float, str]] = field(default_factory=list)  # (t, event) in arrival order

    def played_audio(self) -> np.ndarray:
        return mulaw_to_float(b"".join(self.played)) if self.played else np.zeros(0, dtype=np.float32)

    def first_media_after(self, t: float) -> float | None:
        return next((at for at, _ in self.media if at >= t), None)


class TwilioFarEnd:
    def __init__(self, url: str) -> None:
        self.url = url
        self.heard = Heard()
        self._outgoing: collections.deque[tuple[bytes, str | None]] = collections.deque()  # caller audio to send
        self._playout: collections.deque[tuple[str, bytes | str]] = collections.deque()
        self._ws = None
        self._tasks: list[asyncio.Task] = []
        self._chunk = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> TwilioFarEnd:
        self._ws = await websockets.connect(self.url)
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({"event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID, "start": {
            "accountSid": "AC0", "streamSid": STREAM_SID, "callSid": CALL_SID, "tracks": ["inbound"],
            "customParameters": {"caller": "test"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE_HZ, "channels": 1}}})
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._tick())]
        return self

    async def __aexit__(self, *exc_info) -> None:
        try:
            await self._send({"event": "stop", "streamSid": STREAM_SID,
                              "stop": {"accountSid": "AC0", "callSid": CALL_SID}})
        except websockets.ConnectionClosed:
            pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._ws.close()

    def say(self, audio: np.ndarray, rate_hz: int, key: str) -> None:
        """Queue speech for the microphone; `heard.speech_sent[key]` is set when its speech has been sent."""
        audio_8k = resample(audio, rate_hz, RATE_HZ)
        data = float_to_mulaw(audio_8k)
        frames = [data[i:i + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff") for i in range(0, len(data), FRAME_BYTES)]
        last_speech = max(0, round(speech_end_s(audio_8k) / FRAME_S) - 1)
        self._outgoing.extend((frame, key if k == last_speech else None) for k, frame in enumerate(frames))

    async def wait_for(self, predicate, timeout_s: float) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.heard)), timeout_s)

    async def wait_quiet(self, quiet_s: float, timeout_s: float) -> None:
        """Until no media has arrived for `quiet_s` and the play-out buffer is empty."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last = self.heard.media[-1][0] if self.heard.media else 0.0
            if not self._playout and time.monotonic() - last > quiet_s:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the reply did not end")

    async def _send(self, message: dict) -> None:
        await self._ws.send(json.dumps(message))

    async def _tick(self) -> None:
        """Every 20 ms at real time: send one microphone frame (silence when idle) and play one."""
        t0 = time.monotonic()
        silence = b"\xff" * FRAME_BYTES
        while True:
            self._chunk += 1
            frame, key = self._outgoing.popleft() if self._outgoing else (silence, None)
            await self._send({"event": "media", "sequenceNumber": str(self._chunk + 1), "streamSid": STREAM_SID,
                              "media": {"track": "inbound", "chunk": str(self._chunk),
                                        "timestamp": str(20 * self._chunk),
                                        "payload": base64.b64encode(frame).decode()}})
            if key is not None:
                self.heard.speech_sent[key] = time.monotonic()
            await self._play_one_frame()
            delay = t0 + self._chunk * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _play_one_frame(self) -> None:
        while self._playout and self._playout[0][0] == "mark":  # everything before it was played
            name = str(self._playout.popleft()[1])
            self.heard.marks_echoed.append(name)
            await self._send({"event": "mark", "sequenceNumber": "0", "streamSid": STREAM_SID, "mark": {"name": name}})
        if self._playout:
            self.heard.played.append(bytes(self._playout.popleft()[1]))

    async def _read(self) -> None:
        async for text in self._ws:
            message, t = json.loads(text), time.monotonic()
            event = message["event"]
            assert message["streamSid"] == STREAM_SID, message
            if event == "media":
                payload = base64.b64decode(message["media"]["payload"])
                self.heard.media.append((t, payload))
                self._playout.append(("audio", payload))
            elif event == "mark":
                self.heard.marks_received.append((t, message["mark"]["name"]))
                self._playout.append(("mark", message["mark"]["name"]))
            elif event == "clear":
                self.heard.clears.append(t)
                self._playout.clear()
            self.heard.log.append((t, event))
            async with self._changed:
                self._changed.notify_all()
