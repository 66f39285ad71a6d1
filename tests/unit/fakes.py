"""Scripted fake engines and a recording sink for driving a Session without models or sockets."""

from __future__ import annotations

import asyncio

import numpy as np

from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.base import Transcript
from voice_pipeline.errors import EngineError
from voice_pipeline.protocol.events import AudioChunk, ServerEvent
from voice_pipeline.session.engines import Engines

SPEECH_AMPLITUDE = 0.3
TTS_RATE_HZ = 16_000
TTS_MS_PER_WORD = 100


class FakeVad:
    """Speech wherever a 32 ms window is loud."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    async def process(self, audio: np.ndarray) -> list[float]:
        await asyncio.to_thread(int)  # like the real streams, answer from a thread: the loop runs meanwhile
        self._pending = np.concatenate([self._pending, audio])
        out = []
        while len(self._pending) >= 512:
            window, self._pending = self._pending[:512], self._pending[512:]
            out.append(0.95 if np.abs(window).mean() > 0.1 else 0.02)
        return out

    def close(self) -> None:
        pass


class FakeStt:
    name = "fake-stt"

    def __init__(self, text: str = "what is the capital of france", fail: bool = False) -> None:
        self.text, self.fail = text, fail
        self.calls: list[tuple[bool, int]] = []

    async def transcribe(self, audio_16k: np.ndarray, *, final: bool) -> Transcript:
        self.calls.append((final, len(audio_16k)))
        if self.fail:
            raise EngineError("stt", "scripted failure")
        return Transcript(self.text, final, 1000.0 * len(audio_16k) / 16_000)

    async def warm_up(self) -> None:
        pass


class FakeLlm:
    """Yields scripted tokens; `hold_after` tokens it waits for `release` (to test barge-in)."""

    name = "fake-llm"

    def __init__(self, tokens: list[str] | None = None, hold_after: int | None = None, fail_after: int | None = None) -> None:
        self.tokens = tokens or ["Paris", " is", " the", " capital,", " of", " course.", " It", " is", " lovely."]
        self.hold_after, self.fail_after = hold_after, fail_after
        self.release = asyncio.Event()
        self.calls: list[list] = []
        self.closed = 0

    async def stream(self, messages, *, max_tokens=None):
        self.calls.append(list(messages))
        try:
            for i, token in enumerate(self.tokens):
                if self.hold_after is not None and i == self.hold_after:
                    await self.release.wait()
                if self.fail_after is not None and i == self.fail_after:
                    raise EngineError("llm", "scripted failure")
                yield token
        finally:
            self.closed += 1

    async def warm_up(self, system_prompt: str) -> None:
        pass


class FakeTts:
    name = "fake-tts"
    sample_rate_hz = TTS_RATE_HZ

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.firsts: list[bool] = []  # `first` of each call, in order

    async def synthesize(self, text: str, *, urgent: bool = False, first: bool = False):
        self.texts.append(text)
        self.firsts.append(first)
        samples = TTS_RATE_HZ * TTS_MS_PER_WORD // 1000 * len(text.split())
        yield np.full(samples, 0.2, dtype=np.float32)

    async def warm_up(self) -> None:
        pass


class RecordingSink:
    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []  # ("event", ServerEvent) | ("audio", AudioChunk)
        self._changed = asyncio.Condition()

    async def send_event(self, event: ServerEvent) -> None:
        await self._record(("event", event))

    async def send_audio(self, chunk: AudioChunk) -> None:
        await self._record(("audio", chunk))

    async def _record(self, item) -> None:
        async with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    @property
    def events(self) -> list[ServerEvent]:
        return [item for kind, item in self.items if kind == "event"]

    def types(self) -> list[str]:
        return [event.kind.value for event in self.events]

    def of(self, kind: str) -> list[ServerEvent]:
        return [event for event in self.events if event.kind.value == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout_s: float = 5.0) -> ServerEvent:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.of(kind)) >= count), timeout_s)
        return self.of(kind)[count - 1]


def fake_engines(stt=None, llm=None, tts=None) -> Engines:
    return Engines(
        stt=stt or FakeStt(),
        llm=llm or FakeLlm(),
        tts=tts if tts is not None else FakeTts(),
        make_vad=FakeVad,
        system_prompt="You are a test assistant.",
    )


def make_settings() -> Settings:
    settings = Settings()
    settings.tts.pacing_lead_ms = 60_000  # send at once: unit tests do not wait on real-time pacing
    return settings


def speech(ms: int) -> np.ndarray:
    return np.full(16 * ms, SPEECH_AMPLITUDE, dtype=np.float32)


def silence(ms: int) -> np.ndarray:
    return np.zeros(16 * ms, dtype=np.float32)
