"""Batches STT passes across sessions: the passes due when the model frees up run as one call.

Passes submitted while every runner is busy are collected; when one frees up it takes the due
passes as ONE decode call (one encoder call and one decoder call over the batch; on the 2-core
CPU cheaper than one call each, docs/scaling.md). Finals go first: a batch never leaves a final
waiting behind partials. When more passes are due than `batch_max`, partials that a newer pass
of the same utterance already covers (a later partial, or the turn's final) are dropped unrun:
their callers get `Superseded`, an empty partial, which a turn ignores like any partial without
words. A final is never dropped.

"The same utterance" is read from the audio itself: a turn's passes all start at the turn's
start, so a newer pass of the same turn begins with exactly the samples of the older one. Two
sessions fed sample-identical audio (a synthetic load test) could match too; only a partial is
dropped for it; a turn that had adopted that partial as its final runs its final pass after all
(session/transcription.py).

The queue needs no limit of its own: a session has at most a partial and a final in flight, so
the sessions bound it (`server.max_sessions`). Cancelling a pass that waits removes it; one
already in a running batch is finished by its thread and its result dropped (a thread inside a
native call is never abandoned).
A batch that fails fails only its own passes, each with an `EngineError`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from voice_pipeline.engines.base import Transcript
from voice_pipeline.errors import EngineError
from voice_pipeline.threads import named_thread_pool

SAMPLE_RATE_HZ = 16_000
_HEAD_SAMPLES = 8_000  # passes are grouped by their first 0.5 s before any full comparison

Decode = Callable[[list[np.ndarray]], Sequence[str]]  # audios -> one text each, in order


@dataclass(frozen=True)
class Superseded(Transcript):
    """A partial dropped unrun because a newer pass of the same utterance was queued: no words."""

    superseded: bool = True


@dataclass(eq=False)
class QueuedPass:
    audio_16k: np.ndarray
    final: bool
    seq: int  # submission order
    future: Future[Transcript]

    @property
    def audio_ms(self) -> float:
        return 1000.0 * len(self.audio_16k) / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class Plan:
    batch: list[QueuedPass]  # to run now: finals first, then partials, each in submission order
    superseded: list[QueuedPass]  # stale partials, answered with `Superseded`
    left: list[QueuedPass]  # still queued, in submission order


def plan(queue: Sequence[QueuedPass], batch_max: int) -> Plan:
    """What the next batch runs, given the passes that are due (cancelled ones already removed)."""
    superseded: list[QueuedPass] = []
    if len(queue) > batch_max:
        superseded = stale_partials(queue)
    dropped = set(map(id, superseded))
    live = [p for p in queue if id(p) not in dropped]
    ordered = sorted(live, key=lambda p: (not p.final, p.seq))
    batch = ordered[:batch_max]
    return Plan(batch, superseded, sorted(ordered[batch_max:], key=lambda p: p.seq))


def stale_partials(queue: Sequence[QueuedPass]) -> list[QueuedPass]:
    """Partials for which a newer queued pass hears the same utterance at least as far."""
    groups: dict[bytes, list[QueuedPass]] = {}
    for p in queue:
        if len(p.audio_16k) >= _HEAD_SAMPLES:  # shorter passes are never judged stale
            groups.setdefault(p.audio_16k[:_HEAD_SAMPLES].tobytes(), []).append(p)
    stale = []
    for group in groups.values():
        for older in group:
            if not older.final and any(covers(newer, older) for newer in group):
                stale.append(older)
    return sorted(stale, key=lambda p: p.seq)


def covers(newer: QueuedPass, older: QueuedPass) -> bool:
    """`newer` was submitted later and its audio begins with all of `older`'s."""
    n = len(older.audio_16k)
    if newer.seq <= older.seq or len(newer.audio_16k) < n:
        return False
    tail = slice(max(0, n - 160), n)  # a cheap look at the end before the full comparison
    return bool(np.array_equal(newer.audio_16k[tail], older.audio_16k[tail])
                and np.array_equal(newer.audio_16k[:n], older.audio_16k))


class SttBatcher:
    """Owns the runner threads that call `decode`; `decode` must be safe to call from `runners`
    threads at once (CTranslate2 is, with as many model workers).

    `room`: how many due passes may wait for a busy model before they count as a backlog
    (`waiting`, which sheds new partials): `batch_max` (the default) where a batch costs about
    what one pass does (a GPU), 0 where each pass adds its own cost (the CPU: then partials are
    shed as soon as anything waits, as without batching)."""

    def __init__(self, decode: Decode, batch_max: int = 8, runners: int = 1, room: int | None = None) -> None:
        self._decode = decode
        self.batch_max = max(1, batch_max)
        self.room = self.batch_max if room is None else max(0, room)
        self._runners = max(1, runners)
        self._executor = named_thread_pool(self._runners, "stt-batch")
        self._lock = threading.Lock()
        self._queue: list[QueuedPass] = []
        self._busy = 0  # runners inside `_run`
        self._seq = itertools.count()
        self.batches = 0  # batches run, passes they ran, and partials dropped as superseded (counters)
        self.passes = 0
        self.superseded = 0

    @property
    def waiting(self) -> int:
        """Due passes beyond `room` (the overload signal: session/load.py)."""
        with self._lock:
            due = sum(1 for p in self._queue if not p.future.cancelled())
        return max(0, due - self.room)

    async def transcribe(self, audio_16k: np.ndarray, *, final: bool) -> Transcript:
        future = self.submit(audio_16k, final=final, start=False)
        # Start a runner at the next turn of the loop, so passes submitted in the same turn (several
        # sessions' timers firing together) share a batch instead of the first one running alone.
        asyncio.get_running_loop().call_soon(self.start)
        return await asyncio.wrap_future(future)

    def submit(self, audio_16k: np.ndarray, *, final: bool, start: bool = True) -> Future[Transcript]:
        future: Future[Transcript] = Future()
        with self._lock:
            self._queue.append(QueuedPass(audio_16k, final, next(self._seq), future))
        if start:
            self.start()
        return future

    def start(self) -> None:
        """Start a runner if one is free and passes are due."""
        with self._lock:
            if not self._queue or self._busy >= self._runners:
                return
            self._busy += 1
        self._executor.submit(self._run)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    batch, superseded = self._take()
                    if not batch and not superseded:
                        self._busy -= 1
                        return
                for p in superseded:
                    p.future.set_result(Superseded(text="", final=False, audio_ms=p.audio_ms))
                if batch:
                    self._run_batch(batch)
        except BaseException:  # not an Exception from the model (those fail their batch): free the runner
            with self._lock:
                self._busy -= 1
            raise

    def _take(self) -> tuple[list[QueuedPass], list[QueuedPass]]:
        """Under the lock: the next batch, marked running (a pass cancelled meanwhile is skipped)."""
        next_plan = plan([p for p in self._queue if not p.future.cancelled()], self.batch_max)
        self._queue = next_plan.left
        batch = [p for p in next_plan.batch if p.future.set_running_or_notify_cancel()]
        superseded = [p for p in next_plan.superseded if p.future.set_running_or_notify_cancel()]
        self.superseded += len(superseded)
        self.batches += 1 if batch else 0
        self.passes += len(batch)
        return batch, superseded

    def _run_batch(self, batch: list[QueuedPass]) -> None:
        try:
            texts = list(self._decode([p.audio_16k for p in batch]))
            if len(texts) != len(batch):
                raise RuntimeError(f"{len(texts)} transcripts for {len(batch)} passes")
        except BaseException as exc:  # this batch's passes fail; the next batch runs as usual
            for p in batch:
                p.future.set_exception(EngineError("stt", f"{type(exc).__name__}: {exc}"))
            if not isinstance(exc, Exception):
                raise
            return
        for p, text in zip(batch, texts):
            p.future.set_result(Transcript(text=text, final=p.final, audio_ms=p.audio_ms))
