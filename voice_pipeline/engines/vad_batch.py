"""Silero VAD for every session of a worker in shared onnxruntime calls, up to one per 32 ms tick.

`BatchedVad` owns the batched model (engines/vad_model.py) and the one thread that runs it. Each
session gets a `BatchedVadStream`: it cuts the audio into 576-sample model inputs on the event loop
and queues them; the thread gathers the windows every stream has due into one call (rows are
streams, h/c [1, streams, 128]) and hands each stream its probabilities back.

When to call: as soon as every stream that sent a window lately has one queued, or `wait_ms` after
the first window queued, whichever comes first. One stream alone never waits; with `wait_ms = 32`
N streams sending 32 ms windows at their own phases meet in one call per tick, at the price of up
to 32 ms on each probability; with 0 (the default, `vad.batch_wait_ms`) a call takes whatever
queued while the previous one ran (docs/scaling.md has both measured).

Lifetimes: a stream's recurrent state (h, c) is read and written by the VAD thread only, in the
order the stream queued its windows, so a caller cancelled mid-call loses that call's
probabilities but never mixes or skips state (the audio was consumed, as with the per-stream
path). `close()` takes a stream out of the gathering and drops what it still had queued; a stream
never closed is only held weakly, so it cannot leak either.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice_pipeline.engines.onnx_device import onnx_providers
from voice_pipeline.engines.vad import (
    CONTEXT_SAMPLES, FRAME_SAMPLES, SileroVad, ThreadedVad, load_silero_session, silero_model_path,
)
from voice_pipeline.errors import EngineError
from voice_pipeline.threads import name_native_thread, named_thread_pool

log = logging.getLogger("voice_pipeline.engines.vad_batch")

_INPUT_SAMPLES = CONTEXT_SAMPLES + FRAME_SAMPLES
_STATE_SHAPE = (1, 1, 128)
_RECENT_S = 0.1  # a stream whose last window is older than this is not waited for (its input paused)


def load_batched_session(providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    """An onnxruntime session over the batched model: input [streams, 576], h/c [1, streams, 128]."""
    import onnxruntime

    from voice_pipeline.engines.vad_model import batched_silero_model

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(batched_silero_model(silero_model_path()), providers=list(providers),
                                        sess_options=options)


class _StreamState:
    """A stream's LSTM state: touched by the VAD thread only."""

    __slots__ = ("h", "c", "last_window_t", "__weakref__")

    def __init__(self) -> None:
        self.h = self.c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self.last_window_t = -1.0  # monotonic time of its last queued window (set under the lock)


@dataclass(eq=False)
class _Request:
    """One `process()` call's windows: [k, 576], `fresh` = zero the state before the first."""

    state: _StreamState
    windows: np.ndarray
    fresh: bool
    future: asyncio.Future[list[float]]
    loop: asyncio.AbstractEventLoop
    queued_t: float = 0.0
    probabilities: list[float] = field(default_factory=list)


class BatchedVad:
    """The process-wide VAD: one ONNX session, one thread, one call per tick for all streams."""

    def __init__(self, session: Any = None, *, wait_ms: float = 0.0, device: str = "cpu") -> None:
        self._session = session if session is not None else load_batched_session(onnx_providers(device))
        self._wait_s = max(0.0, wait_ms / 1000.0)
        self._lock = threading.Condition()
        self._queued: list[_Request] = []
        self._waiting: set[int] = set()  # ids of the streams with a request queued
        self._expected = 0  # while gathering: the streams waited for (0: any request wakes the thread)
        self._streams: weakref.WeakSet[_StreamState] = weakref.WeakSet()
        self._closed = False
        self.calls = self.windows = 0  # onnxruntime calls made and windows they scored
        self._thread = threading.Thread(target=self._serve, name="vad-batch", daemon=True)
        self._thread.start()

    def stream(self) -> BatchedVadStream:
        """A new session's stream (the session closes it when it ends)."""
        state = _StreamState()
        with self._lock:
            if self._closed:
                raise EngineError("vad", "the batched VAD is closed", recoverable=False)
            self._streams.add(state)
        return BatchedVadStream(self, state)

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def close(self) -> None:
        """Stop the thread; whatever is still queued fails (the process is ending)."""
        with self._lock:
            self._closed = True
            dropped, self._queued = self._queued, []
            self._lock.notify()
        _settle(dropped, EngineError("vad", "the batched VAD closed", recoverable=False))
        self._thread.join(timeout=5.0)

    # -- called by the streams, on their event loop -------------------------------------------

    def _submit(self, request: _Request) -> None:
        with self._lock:
            if self._closed or request.state not in self._streams:
                raise EngineError("vad", "the VAD stream is closed", recoverable=False)
            request.queued_t = request.state.last_window_t = time.monotonic()
            self._queued.append(request)
            self._waiting.add(id(request.state))
            if len(self._waiting) >= self._expected:
                self._lock.notify()

    def _leave(self, state: _StreamState) -> None:
        with self._lock:
            self._streams.discard(state)
            dropped = [r for r in self._queued if r.state is state]
            self._queued = [r for r in self._queued if r.state is not state]
            self._waiting.discard(id(state))
            if self._expected and time.monotonic() - state.last_window_t < _RECENT_S:
                self._expected -= 1  # it was waited for: no longer
            self._lock.notify()
        for request in dropped:
            request.future.cancel()  # same loop: the stream's owner is closing it

    # -- the VAD thread ---------------------------------------------------------------------------

    def _serve(self) -> None:
        name_native_thread("vad-batch")
        while (batch := self._gather()) is not None:
            self._answer(batch)
            del batch  # holds the streams' states: not a moment longer than the call

    def _answer(self, batch: list[_Request]) -> None:
        try:
            self._run(batch)
        except Exception as exc:  # noqa: BLE001 - the waiting streams get it, the thread goes on
            log.error("VAD batch of %d windows failed: %s", sum(len(r.windows) for r in batch), type(exc).__name__)
            _settle(batch, EngineError("vad", f"batched call failed ({type(exc).__name__})", recoverable=False))
        else:
            _settle(batch, None)

    def _gather(self) -> list[_Request] | None:
        """Wait for the next tick's requests: every recently active stream has one, or time is up."""
        with self._lock:
            while not self._queued and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            now_t = time.monotonic()
            self._expected = sum(1 for s in self._streams if now_t - s.last_window_t < _RECENT_S)
            deadline = self._queued[0].queued_t + self._wait_s
            while len(self._waiting) < self._expected and not self._closed:
                if (remaining := deadline - time.monotonic()) <= 0:
                    break
                self._lock.wait(remaining)
            batch, self._queued, self._expected = self._queued, [], 0
            self._waiting.clear()
            return batch

    def _run(self, batch: list[_Request]) -> None:
        """Each stream's windows in order; step j holds the j-th window of every stream that has one."""
        rows: dict[int, list[tuple[_Request, int]]] = {}
        for request in batch:
            rows.setdefault(id(request.state), []).extend((request, i) for i in range(len(request.windows)))
        lanes = list(rows.values())
        for step in range(max(len(lane) for lane in lanes)):
            members = [lane[step] for lane in lanes if len(lane) > step]
            for request, index in members:
                if request.fresh and index == 0:
                    request.state.h = request.state.c = np.zeros(_STATE_SHAPE, dtype=np.float32)
            model_input = np.stack([request.windows[index] for request, index in members])
            h = np.concatenate([request.state.h for request, _ in members], axis=1)
            c = np.concatenate([request.state.c for request, _ in members], axis=1)
            out, h, c = self._session.run(None, {"input": model_input, "h": h, "c": c})
            probabilities = np.asarray(out, dtype=np.float32).reshape(-1)
            for row, (request, _) in enumerate(members):
                request.state.h, request.state.c = h[:, row:row + 1], c[:, row:row + 1]
                request.probabilities.append(float(probabilities[row]))
            self.calls += 1
            self.windows += len(members)


def _settle(requests: list[_Request], error: BaseException | None) -> None:
    """Resolve each request's future on its own loop (one hop per loop); a cancelled caller is skipped."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Request]] = {}
    for request in requests:
        by_loop.setdefault(request.loop, []).append(request)
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, settled, error)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _resolve(requests: list[_Request], error: BaseException | None) -> None:
    for request in requests:
        if request.future.done():
            continue
        if error is None:
            request.future.set_result(request.probabilities)
        else:
            request.future.set_exception(error)


class BatchedVadStream:
    """One session's VAD on the shared batcher: 16 kHz audio in, one probability per 32 ms window."""

    def __init__(self, batcher: BatchedVad, state: _StreamState) -> None:
        self._batcher, self._state = batcher, state
        self._closed = False
        self.reset()

    def reset(self) -> None:
        """Start this stream afresh (its state only); takes effect in order with its queued windows."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._fresh = True

    async def process(self, audio_16k: np.ndarray) -> list[float]:
        """Speech probabilities for every whole 32 ms window now available (in order)."""
        if self._closed:
            raise EngineError("vad", "the VAD stream is closed", recoverable=False)
        self._pending = np.concatenate([self._pending, audio_16k.astype(np.float32, copy=False)])
        count = len(self._pending) // FRAME_SAMPLES
        if count == 0:
            return []
        audio = np.concatenate([self._context, self._pending[:count * FRAME_SAMPLES]])
        starts = np.arange(count) * FRAME_SAMPLES
        windows = audio[starts[:, None] + np.arange(_INPUT_SAMPLES)]
        self._context = audio[-CONTEXT_SAMPLES:].copy()
        self._pending = self._pending[count * FRAME_SAMPLES:]
        loop = asyncio.get_running_loop()
        request = _Request(self._state, windows, self._fresh, loop.create_future(), loop)
        self._batcher._submit(request)
        self._fresh = False
        return await request.future

    def close(self) -> None:
        """The session ended: leave the gathering, drop what is still queued. Idempotent."""
        if not self._closed:
            self._closed = True
            self._batcher._leave(self._state)


def vad_streams(batch: bool, wait_ms: float, device: str = "cpu") -> Callable[[], BatchedVadStream | ThreadedVad]:
    """Each session's VAD stream as `vad.batch` says: a handle on one BatchedVad for the process
    (on `device`), or (false) a SileroVad of its own, called on one shared VAD thread (CPU)."""
    if batch:
        return BatchedVad(wait_ms=wait_ms, device=device).stream
    session, executor = load_silero_session(), named_thread_pool(1, "vad")
    return lambda: ThreadedVad(SileroVad(session), executor)
