"""A storm of well-formed but abusive realtime clients, shared by the storm test and scripts/soak.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import numpy as np
import websockets

from voice_pipeline.audio import float_to_pcm16

FRAME_MS = 20
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Questions the router sends to the local model (no instant templates: time, greetings, stop).
QUESTIONS = [
    "Tell me about the moon.",
    "Why is the sky blue?",
    "Explain how a rainbow forms.",
    "What is the capital of France?",
    "Describe the water cycle in a few sentences.",
    "How do airplanes stay in the air?",
    "Tell me a long story about a brave knight and a dragon.",
    "What should I cook for dinner tonight?",
]
SPOKEN_QUESTIONS = ["What is the capital of France?", "Tell me a long story about a brave knight and a dragon."]
# How many sessions of each behaviour run at once (concurrent workers, each looping).
DEFAULT_MIX = {"asker": 2, "canceller": 4, "resetter": 2, "vanisher": 3, "caller": 2}
_RULES = [
    "Keep every answer short enough to be spoken in one breath.",
    "Prefer plain words over technical terms, and explain any term you must use.",
    "Never read out web addresses, code, tables or lists; describe them in a sentence instead.",
    "If the user sounds upset, acknowledge it briefly before you answer.",
    "Say numbers, dates and units the way a person would say them aloud.",
    "When a question has several parts, answer the most important part first.",
    "If you do not know something, say so plainly and suggest where the user could find out.",
    "Do not repeat the question back to the user; go straight to the answer.",
    "Use a warm, calm tone, as if talking to a neighbour over the fence.",
    "Avoid filler such as well, so, or as an assistant at the start of a reply.",
]
_MAX_INSTRUCTIONS_CHARS = 3900  # the protocol allows 4000


@dataclass
class StormPlan:
    url: str
    duration_s: float  # wall-time bound: no new session starts after it, in-flight ones are cut
    max_messages: int  # count bound: no new session starts once this many frames were sent
    seed: int = 0
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    speech: list[tuple[np.ndarray, int]] = field(default_factory=list)  # (float32 audio, rate) for callers
    long_instructions: float = 0.6  # share of sessions with ~4000 characters of fresh instructions
    double_cancel: float = 0.3  # share of cancels followed at once by a second cancel or a reset
    stop: Callable[[], bool] = lambda: False  # e.g. "the server process has exited"


@dataclass
class StormStats:
    sessions: int = 0
    messages: int = 0  # every frame sent, text and binary
    audio_frames: int = 0
    text_turns: int = 0
    spoken_turns: int = 0
    cancels: int = 0
    resets: int = 0
    hangups: int = 0  # connections aborted without a close frame
    replies: int = 0  # `response.done` events received, whatever their status
    completed: int = 0  # of which "completed" (under a storm many miss the first-token budget: "failed")
    elapsed_s: float = 0.0  # how long the storm ran (it ends early when `plan.stop()` says so)
    failures: Counter = field(default_factory=Counter)  # client-side: refused connects, broken sockets
    errors: Counter = field(default_factory=Counter)  # `error` events by code

    def summary(self) -> str:
        return (f"{self.elapsed_s:.1f} s, {self.sessions} sessions, {self.messages} messages ({self.audio_frames} audio frames, "
                f"{self.text_turns} text turns, {self.spoken_turns} spoken turns), {self.cancels} cancels, "
                f"{self.resets} resets, {self.hangups} hang-ups, {self.replies} replies ({self.completed} completed), "
                f"errors {dict(self.errors)}, client failures {dict(self.failures)}")


def check_loopback(url: str) -> None:
    """The storm is abuse: it may only ever be aimed at this machine."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing to storm {host!r}: only loopback addresses ({sorted(LOOPBACK_HOSTS)})")


def speak(texts: list[str]) -> list[tuple[np.ndarray, int]]:
    """Spoken questions from the embedded Piper voice (as conftest's piper_say does), with trailing silence."""
    from voice_pipeline.bench.corpus import clear_speech

    spoken = []
    for text in texts:
        speech, rate = clear_speech(text)
        speech = speech * 0.6
        # 0.8 s of silence after the words: the server's VAD ends the turn on it.
        spoken.append((np.concatenate([speech, np.zeros(int(0.8 * rate))]).astype(np.float32), rate))
    return spoken


def long_instructions(rng: random.Random) -> str:
    """~4000 characters of a plausible system prompt; the random opening defeats llama.cpp's prefix cache."""
    text = f"You are voice assistant number {rng.randrange(10**9)}, speaking to a caller. "
    while len(text) < _MAX_INSTRUCTIONS_CHARS - 120:
        text += rng.choice(_RULES) + " "
    return text.strip()


class StormSession:
    """One WebSocket: counts what it sends, reads events in the background, can hang up abruptly."""

    def __init__(self, ws, stats: StormStats) -> None:
        self._ws, self.stats = ws, stats
        self._events: asyncio.Queue[dict | None] = asyncio.Queue()  # None: the socket closed
        self._reader = asyncio.create_task(self._read())
        self.hung_up = False

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    event = json.loads(message)
                    if event.get("type") == "error":
                        self.stats.errors[event.get("error", {}).get("code", "?")] += 1
                    self._events.put_nowait(event)
        except (websockets.ConnectionClosed, OSError):
            pass
        finally:
            self._events.put_nowait(None)

    async def send(self, event: dict) -> None:
        self.stats.messages += 1
        await self._ws.send(json.dumps(event))

    async def send_audio(self, pcm16: bytes) -> None:
        self.stats.messages += 1
        self.stats.audio_frames += 1
        await self._ws.send(pcm16)

    async def wait_for(self, kind: str, timeout_s: float) -> dict | None:
        """Consume events until one of `kind`; None on timeout or when the socket closed."""
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                while (event := await self._events.get()) is not None:
                    if event.get("type") == kind:
                        if kind == "response.done":
                            self.stats.replies += 1
                            self.stats.completed += event.get("status") == "completed"
                        return event
                self._events.put_nowait(None)  # stays closed for later waits
        except TimeoutError:
            pass
        return None

    async def start(self, rng: random.Random, plan: StormPlan, **session) -> bool:
        if rng.random() < plan.long_instructions:
            session["instructions"] = long_instructions(rng)
        await self.send({"type": "session.start", "session": session})
        return await self.wait_for("session.created", 10) is not None

    async def text_turn(self, text: str) -> None:
        self.stats.text_turns += 1
        await self.send({"type": "conversation.item.create",
                         "item": {"role": "user", "content": [{"type": "input_text", "text": text}]}})

    async def cancel(self) -> None:
        self.stats.cancels += 1
        await self.send({"type": "response.cancel"})

    async def reset(self) -> None:
        self.stats.resets += 1
        await self.send({"type": "conversation.reset"})

    async def stream(self, audio: np.ndarray, rate_hz: int, speed: float) -> None:
        """PCM16 in 20 ms frames at `speed` times real time, like a (fast) microphone."""
        pcm = float_to_pcm16(audio)
        frame_bytes = rate_hz * FRAME_MS // 1000 * 2
        t0 = time.monotonic()
        for k, offset in enumerate(range(0, len(pcm), frame_bytes)):
            await self.send_audio(pcm[offset : offset + frame_bytes])
            delay = t0 + (k + 1) * FRAME_MS / 1000.0 / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def hang_up(self) -> None:
        """Drop the TCP connection without a close frame, as a crashed or unplugged client does."""
        self.stats.hangups += 1
        self.hung_up = True
        self._ws.transport.abort()

    async def close(self) -> None:
        if not self.hung_up:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def connect(url: str, stats: StormStats):
    ws = await websockets.connect(url, max_size=1 << 22, open_timeout=10, close_timeout=2, ping_interval=None)
    stats.sessions += 1
    session = StormSession(ws, stats)
    try:
        yield session
    finally:
        await session.close()


async def ask_once(url: str, question: str, timeout_s: float = 60) -> dict | None:
    """One polite session, one text question: its `response.done`, or None."""
    async with connect(url, StormStats()) as session:
        await session.send({"type": "session.start"})
        if await session.wait_for("session.created", 10) is None:
            return None
        await session.text_turn(question)
        return await session.wait_for("response.done", timeout_s)


# -- behaviours: one session each; `left()` is the time left in the storm ----------------------


async def _pause_before_cancel(s: StormSession, rng: random.Random) -> None:
    """Cancel in the first 0.6 s (the issue's clients), right after the first token, or later while
    the reply is still being thought of (a slow prompt, a first-token budget running out)."""
    draw = rng.random()
    if draw < 0.5:
        await asyncio.sleep(rng.uniform(0.0, 0.6))
    elif draw < 0.7:
        await s.wait_for("response.text.delta", 6)
    else:
        await asyncio.sleep(rng.uniform(0.6, 6.0))


async def asker(s: StormSession, rng: random.Random, plan: StormPlan, left: Callable[[], float]) -> None:
    if not await s.start(rng, plan):
        return
    for _ in range(rng.randint(1, 3)):
        await s.text_turn(rng.choice(QUESTIONS))
        if await s.wait_for("response.done", min(60, left())) is None:
            return


async def canceller(s: StormSession, rng: random.Random, plan: StormPlan, left: Callable[[], float]) -> None:
    if not await s.start(rng, plan):
        return
    for _ in range(rng.randint(1, 3)):
        await s.text_turn(rng.choice(QUESTIONS))
        await _pause_before_cancel(s, rng)
        await s.cancel()
        if rng.random() < plan.double_cancel:  # a second cancellation while the first unwinds
            await (s.cancel() if rng.random() < 0.5 else s.reset())
        if await s.wait_for("response.done", min(30, left())) is None:
            return


async def resetter(s: StormSession, rng: random.Random, plan: StormPlan, left: Callable[[], float]) -> None:
    if not await s.start(rng, plan):
        return
    for _ in range(rng.randint(1, 3)):
        await s.text_turn(rng.choice(QUESTIONS))
        await _pause_before_cancel(s, rng)
        await s.reset()
        if rng.random() < plan.double_cancel:
            await s.cancel()
        if await s.wait_for("conversation.reset.done", min(30, left())) is None:
            return


async def vanisher(s: StormSession, rng: random.Random, plan: StormPlan, left: Callable[[], float]) -> None:
    if not await s.start(rng, plan):
        return
    await s.text_turn(rng.choice(QUESTIONS))
    if rng.random() < 0.5:
        await _pause_before_cancel(s, rng)
        await s.cancel()
    await asyncio.sleep(rng.uniform(0.0, 0.6))
    s.hang_up()


async def caller(s: StormSession, rng: random.Random, plan: StormPlan, left: Callable[[], float]) -> None:
    """A spoken question at 1-4x real time, then a hang-up at a random moment of the reply."""
    if not plan.speech:
        return await asker(s, rng, plan, left)
    audio, rate = rng.choice(plan.speech)
    if not await s.start(rng, plan, input_audio_format={"encoding": "pcm16", "sample_rate": rate}):
        return
    s.stats.spoken_turns += 1
    await s.stream(audio, rate, speed=rng.choice([1.0, 2.0, 4.0]))
    if await s.wait_for("response.created", min(20, left())) is not None:
        await asyncio.sleep(rng.uniform(0.0, 5.0))  # mid-reply: thinking, speaking or done
    s.hang_up()


BEHAVIOURS: dict[str, Callable[..., Awaitable[None]]] = {
    "asker": asker, "canceller": canceller, "resetter": resetter, "vanisher": vanisher, "caller": caller,
}


# -- the storm ----------------------------------------------------------------------------------


async def _worker(plan: StormPlan, behaviour: str, index: int, stats: StormStats, deadline: float) -> None:
    """Run sessions of one behaviour back to back until a bound is reached."""
    rng = random.Random(f"{plan.seed}:{behaviour}:{index}")
    act = BEHAVIOURS[behaviour]

    def left() -> float:
        return deadline - time.monotonic()

    while left() > 0 and stats.messages < plan.max_messages and not plan.stop():
        try:
            async with asyncio.timeout(left()), connect(plan.url, stats) as session:
                await act(session, rng, plan, left)
        except TimeoutError:
            break  # the storm's time is up
        except (OSError, websockets.WebSocketException) as exc:
            stats.failures[type(exc).__name__] += 1
            await asyncio.sleep(0.2)  # a refused or broken connection: do not spin


async def run_storm(plan: StormPlan, stats: StormStats | None = None) -> StormStats:
    """Every worker of `plan.mix` at once; returns when the time or message bound is reached."""
    check_loopback(plan.url)
    stats = stats if stats is not None else StormStats()
    started = time.monotonic()
    deadline = started + plan.duration_s
    workers = [_worker(plan, behaviour, i, stats, deadline)
               for behaviour, count in plan.mix.items() for i in range(count)]
    await asyncio.gather(*workers)
    stats.elapsed_s = time.monotonic() - started
    return stats
