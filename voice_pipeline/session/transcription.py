"""Schedules a turn's STT passes: partials while the user speaks, the final pass at the first pause.

On a small CPU a whisper pass costs hundreds of milliseconds whatever the audio's length, so:
- partials are spaced by at least twice the last pass's duration, leaving the CPU half free;
- the final pass starts when a pause begins (not at the endpoint) and is dropped if speech resumes;
- a partial still running at the pause that already covers all of the speech and the tail the
  final pass would get becomes the final pass: no second decode of the same audio. (A partial
  that stopped at the last speech frame clips trailing sounds: "France" heard as "friends".)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from voice_pipeline.engines.base import SpeechToText, Transcript
from voice_pipeline.errors import EngineError

_FINAL_TAIL_MS = 100.0  # audio kept after the last speech frame, so the last word is not clipped


def _final_end(speech_end_ms: float, now_ms: float) -> float:
    """Where a final pass's audio ends: the speech plus its tail, or what has arrived so far."""
    return min(now_ms, speech_end_ms + _FINAL_TAIL_MS)


@dataclass
class _Pass:
    task: asyncio.Task[Transcript]
    end_ms: float  # stream position up to which this pass sees audio


class TurnTranscriber:
    def __init__(
        self,
        stt: SpeechToText | None,  # None: STT is switched off, and every pass fails as a stage failure
        audio: Callable[[float, float], np.ndarray],
        start_ms: float,
        spawn: Callable[..., asyncio.Task[Transcript]],
        partial_interval_ms: float,
        on_partial: Callable[[str], None] | None,
        may_start_partial: Callable[[], bool] = lambda: True,  # False: the STT is behind, shed this partial
        on_superseded: Callable[[], None] = lambda: None,  # a batching STT dropped a partial unrun
    ) -> None:
        self._may_start_partial, self._on_superseded = may_start_partial, on_superseded
        self._stt, self._audio, self._spawn = stt, audio, spawn
        self.start_ms = start_ms
        self._interval_ms = partial_interval_ms
        self._on_partial = on_partial
        self._partial: _Pass | None = None
        self._final: _Pass | None = None
        self._last_partial_at_ms = start_ms
        self._last_pass_ms = 0.0
        self.reused_partial = False
        self.discarded_finals = 0

    def maybe_partial(self, now_ms: float) -> None:
        """Start a partial pass if partials are on and the last one is far enough behind."""
        if self._on_partial is None or self._partial is not None or self._final is not None:
            return
        if now_ms - self._last_partial_at_ms < max(self._interval_ms, 2 * self._last_pass_ms):
            return
        self._last_partial_at_ms = now_ms
        if not self._may_start_partial():  # skipped, not queued: the next one is due an interval later
            return
        self._partial = _Pass(self._spawn(self._run_partial(now_ms)), now_ms)

    def pause_started(self, speech_end_ms: float, now_ms: float) -> None:
        """Speech paused: start the final pass now (or adopt a partial that already covers it)."""
        if self._final is not None:
            return
        partial = self._partial
        end_ms = _final_end(speech_end_ms, now_ms)
        if partial is not None and partial.end_ms >= end_ms:  # it heard all of the speech and its tail
            self._final = _Pass(self._spawn(self._adopt(partial.task, end_ms)), end_ms)
            self._partial = None
            self.reused_partial = True
            return
        self._final = _Pass(self._spawn(self._transcribe(end_ms, final=True)), end_ms)

    def speech_resumed(self) -> None:
        if self._final is not None:
            self._final.task.cancel()
            self._final = None
            self.discarded_finals += 1

    def final(self, speech_end_ms: float, now_ms: float) -> asyncio.Task[Transcript]:
        """The final transcript's task: the one started at the pause, or a new pass over the speech
        and its tail (as much of it as has arrived by `now_ms`)."""
        if self._final is None:
            end_ms = _final_end(speech_end_ms, now_ms)
            self._final = _Pass(self._spawn(self._transcribe(end_ms, final=True)), end_ms)
        return self._final.task

    def cancel(self) -> None:
        for run in (self._partial, self._final):
            if run is not None:
                run.task.cancel()

    async def _adopt(self, partial: asyncio.Task[Transcript], end_ms: float) -> Transcript:
        """A partial adopted as the final; if a batching STT dropped it unrun (another pass of the
        same audio was queued), the final pass runs after all: a turn never loses its words to it."""
        transcript = await partial
        if transcript.superseded:
            return await self._transcribe(end_ms, final=True)
        return transcript

    async def _run_partial(self, end_ms: float) -> Transcript:
        try:
            transcript = await self._transcribe(end_ms, final=False)
        finally:
            if self._partial is not None and self._partial.end_ms == end_ms:
                self._partial = None
        if transcript.superseded:
            self._on_superseded()  # shed under load, like a partial never started
        if transcript.text and self._on_partial is not None and self._final is None:
            self._on_partial(transcript.text)
        return transcript

    async def _transcribe(self, end_ms: float, final: bool) -> Transcript:
        if self._stt is None:
            raise EngineError("stt", "speech-to-text is switched off")
        started = time.perf_counter()
        transcript = await self._stt.transcribe(self._audio(self.start_ms, end_ms), final=final)
        self._last_pass_ms = 1000.0 * (time.perf_counter() - started)
        return transcript
