"""A session's single writer: control events first, reply audio paced at real time plus a lead.

Everything the session sends goes through one task, so ordering is simple to reason about:
- control events are sent as soon as the writer is free, ahead of any waiting audio;
- audio is cut into frames and sent while the client holds less than `lead_ms` of unplayed
  audio (estimated from what was sent and the wall clock), so a flush takes effect at once;
- `flush()` drops all queued audio synchronously; anything emitted after it (such as
  `output_audio_buffer.cleared`) is therefore never followed by audio of the flushed reply;
- `pause()` stops sending audio (kept queued) while speech over a reply is judged, `resume()`
  goes on from the next unsent frame: the client plays out its lead, is silent, then hears the
  rest, and `played_ms` stays right because the play cursor only moves when audio is sent.
  A reply that is playing with audio still to come is announced to the client
  (`output_audio_buffer.paused`, ahead of any audio): a client that knows the event stops playing
  at once and keeps its buffer. It is answered by `output_audio_buffer.resumed` when the reply
  goes on, or by the reply's `output_audio_buffer.cleared` when it was flushed meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from voice_pipeline.protocol.events import AudioChunk, EventKind, ServerEvent, now


class Sink(Protocol):
    """A transport's encoder: turns events and audio into bytes on its connection."""

    async def send_event(self, event: ServerEvent) -> None: ...

    async def send_audio(self, chunk: AudioChunk) -> None: ...


@dataclass
class _ReplyAudio:
    response_id: str
    sample_rate_hz: int
    frames: collections.deque[np.ndarray] = field(default_factory=collections.deque)
    ended: bool = False  # no more audio will be added
    held: bool = False  # a speculative reply: queued, not sent until released
    sent_ms: float = 0.0
    play_end_t: float = 0.0
    started: bool = False
    flushed: bool = False  # its queued audio was dropped (a barge-in, a failure, the session's end)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Outbox:
    def __init__(
        self,
        session_id: str,
        frame_ms: int = 40,
        lead_ms: int = 200,
        max_buffered_ms: float = 60_000.0,
        on_first_audio: Callable[[str, float], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.frame_ms, self.lead_s = frame_ms, lead_ms / 1000.0
        self.max_buffered_ms = max_buffered_ms
        self._on_first_audio = on_first_audio
        self._control: collections.deque[ServerEvent] = collections.deque()
        self._replies: collections.deque[_ReplyAudio] = collections.deque()
        self._by_id: dict[str, _ReplyAudio] = {}
        self._finished: dict[str, _ReplyAudio] = {}  # the last few, for played_ms after the end
        self._play_cursor_t = 0.0  # when the client will have played everything sent so far
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._closed = False
        self._paused = False
        self._playing: _ReplyAudio | None = None  # the reply whose audio was sent last
        self._pause_announced: _ReplyAudio | None = None  # output_audio_buffer.paused was sent for it
        # Each audio frame sent, with the time the client starts playing it (the echo reference).
        self.on_audio_sent: Callable[[np.ndarray, int, float], None] | None = None

    # -- producers ----------------------------------------------------------------------------

    def emit(self, event: ServerEvent) -> None:
        """Queue a control event. Never dropped; the protocol's event rate keeps this small."""
        self._control.append(event)
        self._wake.set()

    def open_reply(self, response_id: str, sample_rate_hz: int, held: bool = False) -> None:
        reply = _ReplyAudio(response_id, sample_rate_hz, held=held)
        self._replies.append(reply)
        self._by_id[response_id] = reply

    async def add_audio(self, response_id: str, samples: np.ndarray) -> None:
        """Queue reply audio; waits while more than `max_buffered_ms` is queued (backpressure)."""
        reply = self._by_id.get(response_id)
        if reply is None or reply.ended:
            return
        step = max(1, reply.sample_rate_hz * self.frame_ms // 1000)
        for start in range(0, len(samples), step):
            reply.frames.append(samples[start : start + step])
        self._wake.set()
        while self._buffered_ms() > self.max_buffered_ms and response_id in self._by_id:
            self._space.clear()
            await self._space.wait()

    def end_reply(self, response_id: str) -> None:
        reply = self._by_id.get(response_id)
        if reply is not None:
            reply.ended = True
            self._wake.set()

    def release(self, response_id: str) -> None:
        """A held reply may go out now."""
        reply = self._by_id.get(response_id)
        if reply is not None:
            reply.held = False
            self._wake.set()

    async def wait_sent(self, response_id: str) -> None:
        reply = self._by_id.get(response_id)
        if reply is not None:
            await reply.done.wait()

    def flush(self, response_id: str | None = None) -> None:
        """Drop queued audio of one reply (or of all): synchronous, nothing of it is sent after."""
        for reply in list(self._replies):
            if response_id is None or reply.response_id == response_id:
                reply.frames.clear()
                reply.ended = True
                reply.flushed = True
                self._finish(reply)
        self._play_cursor_t = min(self._play_cursor_t, now())
        self._space.set()

    def played_ms(self, response_id: str, at: float | None = None) -> float:
        """How much of a reply the client has played by `at`, from what was sent and when."""
        reply = self._by_id.get(response_id) or self._finished.get(response_id)
        if reply is None or not reply.started:
            return 0.0
        t = now() if at is None else at
        unplayed_ms = max(0.0, reply.play_end_t - t) * 1000.0
        return max(0.0, reply.sent_ms - unplayed_ms)

    def sent_ms(self, response_id: str) -> float:
        reply = self._by_id.get(response_id) or self._finished.get(response_id)
        return reply.sent_ms if reply else 0.0

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self, turn_id: str | None = None) -> None:
        """Stop sending reply audio until `resume()`; queued audio and control events are kept.

        If a reply is playing with audio still to come, tell the client at once (before any audio)."""
        if self._paused:
            return
        self._paused = True
        reply = self._playing
        if reply is None or reply.flushed or (reply.ended and not reply.frames):
            return  # nothing playing, or all of it sent: the client only plays out its lead
        self._pause_announced = reply
        self.emit(ServerEvent(EventKind.OUTPUT_AUDIO_PAUSED, self.session_id, turn_id=turn_id,
                              response_id=reply.response_id, data={"audio_ms": round(reply.sent_ms)}))

    def resume(self) -> None:
        """Send audio again; a paused reply that was not flushed meanwhile is announced as resumed."""
        reply, self._pause_announced = self._pause_announced, None
        if self._paused and reply is not None and not reply.flushed:
            self.emit(ServerEvent(EventKind.OUTPUT_AUDIO_RESUMED, self.session_id, response_id=reply.response_id,
                                  data={"audio_ms": round(reply.sent_ms)}))
        self._paused = False
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self.flush()
        self._wake.set()

    # -- the writer ---------------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        while not self._closed or self._control:
            if self._control:
                await sink.send_event(self._control.popleft())
                continue
            delay = self._next_audio_delay()
            if delay == 0.0:
                await self._send_frame(sink)
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):  # not wait_for: it can swallow a cancellation on 3.11
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _next_audio_delay(self) -> float | None:
        """0 if a frame should go now, seconds to wait if one is waiting on pacing, else None."""
        self._drop_finished_heads()
        if self._paused or not self._replies or not self._replies[0].frames or self._replies[0].held:
            return None
        ahead_s = self._play_cursor_t - now()
        return 0.0 if ahead_s < self.lead_s else ahead_s - self.lead_s

    async def _send_frame(self, sink: Sink) -> None:
        reply = self._replies[0]
        frame = reply.frames.popleft()
        t = now()
        if not reply.started:
            reply.started = True
            self._play_cursor_t = max(self._play_cursor_t, t)
            if self._on_first_audio:
                self._on_first_audio(reply.response_id, t)
            await sink.send_event(
                ServerEvent(
                    EventKind.OUTPUT_AUDIO_STARTED, self.session_id, response_id=reply.response_id,
                    data={"sample_rate": reply.sample_rate_hz},
                )
            )
        duration_s = len(frame) / reply.sample_rate_hz
        play_start_t = max(self._play_cursor_t, t)
        if self.on_audio_sent is not None:
            self.on_audio_sent(frame, reply.sample_rate_hz, play_start_t)
        self._play_cursor_t = play_start_t + duration_s
        reply.sent_ms += duration_s * 1000.0
        self._playing = reply  # from here a pause counts this frame as sent (its audio_ms)
        reply.play_end_t = self._play_cursor_t
        self._space.set()
        await sink.send_audio(AudioChunk(reply.response_id, frame, reply.sample_rate_hz))

    def _drop_finished_heads(self) -> None:
        while self._replies and self._replies[0].ended and not self._replies[0].frames:
            self._finish(self._replies[0])

    def _finish(self, reply: _ReplyAudio) -> None:
        if reply in self._replies:
            self._replies.remove(reply)
        self._by_id.pop(reply.response_id, None)
        self._finished[reply.response_id] = reply
        while len(self._finished) > 16:
            self._finished.pop(next(iter(self._finished)))
        reply.done.set()

    def _buffered_ms(self) -> float:
        return sum(
            1000.0 * sum(len(f) for f in reply.frames) / reply.sample_rate_hz for reply in self._replies
        )
