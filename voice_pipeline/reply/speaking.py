"""One reply: transcript -> LLM token stream -> speakable pieces -> TTS -> the outbox.

The LLM and the TTS run as two tasks of one TaskGroup, joined by a bounded queue of pieces, so
the first piece is being synthesized while the LLM is still writing the rest. Cancelling the
task that runs `Reply.run` cancels both and closes the model streams.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from voice_pipeline.audio import StreamingResampler
from voice_pipeline.engines.base import ChatMessage, LanguageModel, TextToSpeech
from voice_pipeline.metrics import TurnTimeline
from voice_pipeline.protocol.events import EventKind, ServerEvent, now
from voice_pipeline.reply.chunker import SpeakableChunker, clean_for_speech
from voice_pipeline.reply.pace import ReplyPace
from voice_pipeline.session.outbox import Outbox
from voice_pipeline.threads import can_wait

if TYPE_CHECKING:
    from voice_pipeline.engines.fallback import FallbackRecord

_PIECE_QUEUE = 8


@dataclass
class SpokenPiece:
    text: str
    audio_ms: float = 0.0


@dataclass
class ReplyRecord:
    response_id: str
    text: str = ""
    tokens: int = 0
    pieces: list[SpokenPiece] = field(default_factory=list)

    def played_text(self, played_ms: float) -> str:
        """The words the user heard, given how many ms of the reply's audio were played."""
        words: list[str] = []
        start_ms = 0.0
        for piece in self.pieces:
            end_ms = start_ms + piece.audio_ms
            piece_words = piece.text.split()
            if played_ms >= end_ms:
                words.extend(piece_words)
            elif played_ms > start_ms and piece.audio_ms > 0:
                share = (played_ms - start_ms) / piece.audio_ms
                words.extend(piece_words[: int(len(piece_words) * share)])
                break
            else:
                break
            start_ms = end_ms
        return " ".join(words)


@dataclass
class ReplyPlan:
    messages: Sequence[ChatMessage]
    max_tokens: int
    first_piece_min_words: int = 3
    piece_min_words: int = 8
    stream_text: bool = True  # False: the whole reply is written before any of it is spoken
    llm_record: FallbackRecord | None = None  # filled in by a cascading LLM
    first_piece_max_words: int = 0  # 0: a first piece ends at a clause end only (reply/chunker.py)


class Reply:
    def __init__(
        self,
        record: ReplyRecord,
        timeline: TurnTimeline,
        *,
        session_id: str,
        turn_id: str,
        tts: TextToSpeech | None,
        outbox: Outbox,
        output_rate_hz: int,
        emit: Callable[[ServerEvent], None],
        later_lead_ms: float = 1500.0,
    ) -> None:
        """`later_lead_ms`: the reply's work after its first piece runs at a lower CPU priority while
        more than this much of its audio is left to play (`ReplyPace`)."""
        self.session_id, self.turn_id = session_id, turn_id
        self.record, self.timeline = record, timeline
        self.pace = ReplyPace(timeline, later_lead_ms)
        self.tts, self.outbox = tts, outbox
        self.output_rate_hz = output_rate_hz
        self._emit = emit

    def _event(self, kind: EventKind, **data: object) -> None:
        self._emit(ServerEvent(kind, self.session_id, turn_id=self.turn_id, response_id=self.record.response_id, data=data))

    def event(self, kind: EventKind, **data: object) -> None:
        """An event of this reply (e.g. a tool call), sent, held or dropped with the reply's own."""
        self._event(kind, **data)

    async def run(self, llm: LanguageModel, plan: ReplyPlan) -> None:
        """Write the reply with `llm` and speak it as it is written."""
        pieces: asyncio.Queue[str | None] = asyncio.Queue(_PIECE_QUEUE)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._write(llm, plan, pieces))
                group.create_task(self._speak(pieces))
        except ExceptionGroup as group_error:
            raise group_error.exceptions[0] from None  # the first failure decides the reply's fate
        self._event(EventKind.RESPONSE_TEXT_DONE, text=self.record.text)

    async def speak_text(self, text: str, cached: np.ndarray | None = None, cached_rate_hz: int = 0) -> None:
        """Speak a fixed text (templates, fallbacks): from cached audio if given, else through TTS."""
        self.timeline.mark("llm_first_token", now())
        self.timeline.mark("first_piece", now())
        self.record.text = (self.record.text + " " + text).strip()
        self._event(EventKind.RESPONSE_TEXT_DELTA, delta=text)
        if cached is not None or self.tts is None:
            if cached is not None:
                await self.add_cached(text, cached, cached_rate_hz)
            self._event(EventKind.RESPONSE_TEXT_DONE, text=self.record.text)
            return
        pieces: asyncio.Queue[str | None] = asyncio.Queue(_PIECE_QUEUE)
        chunker = SpeakableChunker()
        for piece in [*chunker.push(text + " "), *chunker.flush()]:
            await pieces.put(piece)
        await pieces.put(None)
        await self._speak(pieces)
        self._event(EventKind.RESPONSE_TEXT_DONE, text=self.record.text)

    def text_only(self, text: str) -> None:
        """A reply the client can show but not hear (no audio could be made)."""
        self.record.text = (self.record.text + " " + text).strip()
        self._event(EventKind.RESPONSE_TEXT_DELTA, delta=text)
        self._event(EventKind.RESPONSE_TEXT_DONE, text=self.record.text)

    async def add_cached(self, text: str, audio: np.ndarray, rate_hz: int) -> None:
        """Queue pre-synthesized audio (no TTS call); it counts as spoken text for the history."""
        self.timeline.mark("tts_first_audio", now())
        out = StreamingResampler(rate_hz, self.output_rate_hz).process(audio, final=True)
        self.record.pieces.append(SpokenPiece(text, 1000.0 * len(out) / self.output_rate_hz))
        await self.outbox.add_audio(self.record.response_id, out)

    async def _write(self, llm: LanguageModel, plan: ReplyPlan, pieces: asyncio.Queue[str | None]) -> None:
        chunker = SpeakableChunker(first_min_words=plan.first_piece_min_words, min_words=plan.piece_min_words,
                                   first_max_words=plan.first_piece_max_words)
        extra = {"record": plan.llm_record} if plan.llm_record is not None else {}
        # The listener waits for the first piece; the tokens after it may yield to others' first
        # ones while enough of this reply's audio is left to play.
        can_wait.set(self.pace.can_wait)  # this task's context: seen by the LLM it streams from
        stream = llm.stream(plan.messages, max_tokens=plan.max_tokens, **extra)
        try:
            async for delta in stream:
                self.record.tokens += 1
                t = now()
                if self.record.tokens == 1:
                    self.timeline.mark("llm_first_token", t)
                elif self.record.tokens == 20:
                    self.timeline.mark("llm_token_20", t)
                self.record.text += delta
                self._event(EventKind.RESPONSE_TEXT_DELTA, delta=delta)
                for piece in chunker.push(delta) if plan.stream_text else ():
                    self.timeline.mark("first_piece", now())
                    await pieces.put(piece)
                    self.pace.first_piece_written = True
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # engines stream from async generators
        rest = chunker.flush()
        if not plan.stream_text:  # the whole answer, now complete, as one piece
            whole = " ".join(clean_for_speech(self.record.text).split())
            rest = [whole] if any(ch.isalnum() for ch in whole) else []
        for piece in rest:
            self.timeline.mark("first_piece", now())
            await pieces.put(piece)
        self.record.text = self.record.text.strip()
        await pieces.put(None)

    async def _speak(self, pieces: asyncio.Queue[str | None]) -> None:
        if self.tts is None:  # TTS switched off: text-only replies
            while await pieces.get() is not None:
                pass
            return
        resampler = StreamingResampler(self.tts.sample_rate_hz, self.output_rate_hz)
        while (text := await pieces.get()) is not None:
            spoken = SpokenPiece(clean_for_speech(text))
            # The first piece, or one the playback is about to need: ahead of others' later pieces.
            first = not self.record.pieces
            urgent = first or not self.pace.can_wait()
            self.record.pieces.append(spoken)
            async for audio in self.tts.synthesize(spoken.text, urgent=urgent, first=first):
                self.timeline.mark("tts_first_audio", now())
                # A piece's length is its TTS audio's: the resampler keeps positions but holds back a
                # little, which reaches the outbox with the next piece (or the flush below).
                audio_ms = 1000.0 * len(audio) / self.tts.sample_rate_hz
                spoken.audio_ms += audio_ms
                self.pace.audio_ms += audio_ms
                await self.outbox.add_audio(self.record.response_id, resampler.process(audio))
        tail = resampler.flush()
        if len(tail) and self.record.pieces:
            await self.outbox.add_audio(self.record.response_id, tail)
