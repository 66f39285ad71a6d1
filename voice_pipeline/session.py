"""One conversation: input audio -> turn taking -> replies, independent of the transport.

A transport decodes its wire format into `feed_pcm16`/`feed_samples` calls and `handle(command)`,
and gives `run()` a Sink that encodes events and audio. One TaskGroup per session runs the input
loop and the outbox writer; each reply runs in its own task, cancelled on barge-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import commands_in as cmd
from .audio import PIPELINE_RATE_HZ, StreamingResampler, pcm16_to_float
from .audio_history import AudioHistory
from .bounded import DropOldestQueue
from .conversation import Conversation
from .engines.base import LanguageModel, SpeechToText, TextToSpeech
from .errors import EngineError, ProtocolError
from .events import EventKind, ServerEvent, now
from .metrics import PipelineMetrics, TurnTimeline
from .outbox import Outbox, Sink
from .answer_flow import last_resort, produce
from .answering import Answer, Answerer
from .phrasebook import SORRY, STT_OFF, Phrasebook
from .responder import Reply, ReplyPlan, ReplyRecord
from .routing.instant import InstantAction
from . import speculation
from .session_config import SessionConfig
from .settings import Settings
from .transcriber import TurnTranscriber
from .turn import BargeIn, EndOfTurn, SilenceStarted, SpeechResumed, SpeechStarted, TurnConfig, TurnTaking

log = logging.getLogger("voice_pipeline.session")
VAD_FRAME_MS = 32.0


@dataclass
class Engines:
    stt: SpeechToText | None  # None: switched off (capabilities.stt)
    llm: LanguageModel | None  # None: switched off (capabilities.llm)
    tts: TextToSpeech | None
    make_vad: Callable[[], object]  # returns an object with process(audio_16k) -> list[float]
    system_prompt: str
    vad_executor: Executor | None = None
    answerer: Answerer | None = None  # None: every turn goes to `llm`, no routing
    phrases: Phrasebook | None = None  # pre-synthesized fixed phrases


@dataclass
class _Turn:
    turn_id: str
    start_ms: float
    timeline: TurnTimeline = field(default_factory=TurnTimeline)
    stt: TurnTranscriber | None = None


@dataclass
class _Frame:
    samples: np.ndarray  # float32 at the session's input rate
    t: float  # arrival, monotonic


class Session:
    def __init__(self, session_id: str, settings: Settings, engines: Engines, metrics: PipelineMetrics) -> None:
        self.session_id, self.settings, self.engines, self.metrics = session_id, settings, engines, metrics
        self.config = SessionConfig.from_settings(settings, engines.system_prompt)
        self.started = False
        self.conversation = Conversation(settings.llm.history_turns)
        self.outbox = Outbox(
            session_id, settings.tts.frame_ms, settings.tts.pacing_lead_ms, on_first_audio=self._on_first_audio
        )
        self._audio_in: DropOldestQueue[_Frame] = DropOldestQueue(settings.server.audio_in_queue_frames)
        self._turns = TurnTaking(self._turn_config())
        self._history_audio = AudioHistory()
        self._resampler = StreamingResampler(self.config.input_rate_hz, PIPELINE_RATE_HZ)
        self._vad = engines.make_vad()
        self._vad_pos_ms = 0.0
        self._last_frame = (0.0, 0.0)  # (arrival t, stream position ms at the frame's end)
        self._input_start_ms = 0.0  # with VAD off, the turn is everything since this position
        self._turn: _Turn | None = None
        self._ids = itertools.count(1)
        self._reply_task: asyncio.Task | None = None
        self._active_turn_id: str | None = None
        self._reply_record: ReplyRecord | None = None
        self._reply_timelines: dict[str, TurnTimeline] = {}
        self._tasks: set[asyncio.Task] = set()
        self.phrases = engines.phrases or Phrasebook(22_050)
        self._last_resorts_in_row = 0
        self._speculation: speculation.Speculation | None = None

    # -- transport-facing API -----------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        """Run until cancelled (the transport cancels it when its peer goes away)."""
        self.metrics.sessions.inc()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.outbox.run(sink))
                group.create_task(self._input_loop())
        finally:
            self.metrics.sessions.dec()
            for task in [self._reply_task, *self._tasks]:
                if task is not None and not task.done():
                    task.cancel()

    def feed_pcm16(self, data: bytes) -> None:
        """A binary audio frame from the client (PCM16 at the input rate), validated here."""
        if not self.started:
            return self.error("session_not_started", "send session.start before audio")
        if len(data) % 2:
            return self.error("invalid_audio_frame", f"binary frame of {len(data)} bytes is not whole 16-bit samples")
        max_bytes = self.max_audio_frame_bytes
        if len(data) > max_bytes:
            return self.error("audio_frame_too_large", f"{len(data)} bytes > {max_bytes} (100 ms at the input rate)")
        self.feed_samples(pcm16_to_float(data))

    def feed_samples(self, samples: np.ndarray) -> None:
        if not self.started:
            return self.error("session_not_started", "send session.start before audio")
        if not self._audio_in.put(_Frame(samples, now())):
            self.metrics.audio_in_dropped.inc()

    @property
    def max_audio_frame_bytes(self) -> int:
        return self.config.input_rate_hz * 2 // 10

    async def handle(self, command: cmd.Command) -> None:
        if isinstance(command, cmd.StartSession):
            return self._start(command.config)
        if not self.started:
            return self.error("session_not_started", "send session.start first")
        match command:
            case cmd.UpdateSession(config):
                self._apply_config(config, EventKind.SESSION_UPDATED)
            case cmd.CommitInput():
                await self._apply_actions(self._turns.commit(self._history_audio.end_ms))
            case cmd.ClearInput():
                self._drop_turn()
                self._turns.clear()
                self._input_start_ms = self._history_audio.end_ms
            case cmd.UserText(text):
                await self._text_turn(text)
            case cmd.TruncateReply(response_id, audio_end_ms):
                self._truncate(response_id, audio_end_ms)
            case cmd.CancelResponse():
                self._interrupt("cancelled_by_client")
            case cmd.ResetConversation():
                self._interrupt("reset")
                await self._wait_reply_finished()
                self.conversation.reset()
                self._emit(EventKind.RESET_DONE)

    def error(self, code: str, message: str, recoverable: bool = True, event_type: str | None = None) -> None:
        self.metrics.errors.labels(code).inc()
        log.info("session %s error %s", self.session_id, code)
        data = {"code": code, "message": message, "recoverable": recoverable}
        if event_type:
            data["event_type"] = event_type
        self._emit(EventKind.ERROR, error=data)

    # -- session settings ---------------------------------------------------------------------

    def _start(self, config) -> None:
        if self.started:
            return self.error("invalid_event", "the session has already started", event_type="session.start")
        self.started = True
        self._apply_config(config or {}, EventKind.SESSION_CREATED)

    def _apply_config(self, data, kind: EventKind) -> None:
        try:
            new = self.config.updated(data)
        except ProtocolError as exc:
            self.error(exc.code, exc.message, event_type="session.update")
            if kind is EventKind.SESSION_CREATED:
                self._emit(kind, session=self.config.to_wire(), limits=self._limits())
            return
        if new.input_rate_hz != self.config.input_rate_hz:
            self._resampler = StreamingResampler(new.input_rate_hz, PIPELINE_RATE_HZ)
        self.config = new
        self._turns.config = self._turn_config()
        self._emit(kind, session=new.to_wire(), limits=self._limits())

    def _turn_config(self) -> TurnConfig:
        vad, config = self.settings.vad, self.config
        return TurnConfig(
            threshold=config.vad_threshold,
            min_speech_ms=vad.min_speech_ms,
            endpoint_silence_ms=config.silence_duration_ms,
            barge_in_min_speech_ms=vad.barge_in_min_speech_ms,
            vad_enabled=config.vad_enabled,
        )

    def _limits(self) -> dict:
        server = self.settings.server
        return {
            "max_text_frame_bytes": server.max_text_frame_bytes,
            "max_audio_frame_bytes": self.max_audio_frame_bytes,
            "max_sessions": server.max_sessions,
            "audio_in_queue_frames": server.audio_in_queue_frames,
        }

    # -- input --------------------------------------------------------------------------------

    async def _input_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle_s = None if self._turn is None else self._turns.endpoint_silence_ms / 1000.0
            frame = await self._audio_in.get(idle_s)
            if frame is None:
                self._last_frame = (now(), self._history_audio.end_ms)
                await self._apply_actions(self._turns.input_idle(self._history_audio.end_ms))
                continue
            samples = self._resampler.process(frame.samples)
            self._history_audio.append(samples)
            self._last_frame = (frame.t, self._history_audio.end_ms)
            probabilities = await loop.run_in_executor(self.engines.vad_executor, self._vad.process, samples)
            for probability in probabilities:
                self._vad_pos_ms += VAD_FRAME_MS
                await self._apply_actions(self._turns.on_vad(self._vad_pos_ms, VAD_FRAME_MS, probability))
            if self._turn is not None and self._turn.stt is not None:
                self._turn.stt.maybe_partial(self._history_audio.end_ms)

    def _stream_time(self, position_ms: float) -> float:
        """The monotonic time at which the sample at `position_ms` reached the server."""
        arrival_t, end_ms = self._last_frame
        return arrival_t - max(0.0, end_ms - position_ms) / 1000.0

    async def _apply_actions(self, actions) -> None:
        for action in actions:
            match action:
                case SpeechStarted(start_ms):
                    self._turn = self._new_turn(start_ms)
                    self._emit(EventKind.SPEECH_STARTED, turn_id=self._turn.turn_id, audio_start_ms=round(start_ms))
                case SilenceStarted(speech_end_ms):
                    if self._turn and self.settings.stt.early_final and self.settings.capabilities.stt:
                        self._turn.stt.pause_started(speech_end_ms, self._history_audio.end_ms)
                        self._maybe_speculate(self._turn, speech_end_ms)
                case SpeechResumed():
                    if self._turn:
                        self._discard_speculation(self._turn)
                        self._turn.stt.speech_resumed()
                case EndOfTurn():
                    self._end_turn(action)
                case BargeIn():
                    self._interrupt("barge_in")

    def _end_turn(self, end: EndOfTurn) -> None:
        turn = self._turn
        if turn is None:  # a commit with VAD off, or with no speech detected
            if self._history_audio.end_ms - self._input_start_ms < 100:
                return self.error("input_audio_buffer_empty", "no audio to commit", event_type="input_audio_buffer.commit")
            turn = self._new_turn(self._input_start_ms)
        self._turn = None
        self._input_start_ms = self._history_audio.end_ms
        turn.timeline.mark("speech_end", self._stream_time(end.speech_end_ms))
        turn.timeline.mark("endpoint", now())
        self._emit(EventKind.SPEECH_STOPPED, turn_id=turn.turn_id, audio_end_ms=round(end.speech_end_ms))
        self._emit(EventKind.INPUT_COMMITTED, turn_id=turn.turn_id)
        spec = self._speculation
        if spec is not None and spec.turn_id == turn.turn_id:
            return self._commit_speculation(spec, turn)
        self._discard_speculation(turn)
        if not self.settings.capabilities.stt:  # an off-state: say so, from cached audio
            return self._start_reply_task(turn, self._reply, turn, None, STT_OFF)
        stt = turn.stt.final(min(self._history_audio.end_ms, end.speech_end_ms + 100.0))
        self._start_reply_task(turn, self._voice_turn, turn, stt)

    def _new_turn(self, start_ms: float) -> _Turn:
        turn = _Turn(f"t{next(self._ids)}", start_ms)

        def on_partial(text: str) -> None:
            if self._turn is turn:
                self._emit(EventKind.TRANSCRIPT_PARTIAL, turn_id=turn.turn_id, transcript=text)

        turn.stt = TurnTranscriber(
            self.engines.stt,
            self._history_audio.slice_ms,
            start_ms - self.settings.vad.prefix_padding_ms,
            self._spawn,
            self.settings.stt.partial_interval_ms,
            on_partial if self.config.partials and self.settings.capabilities.stt else None,
        )
        return turn

    def _drop_turn(self) -> None:
        if self._turn is not None:
            self._discard_speculation(self._turn)
            self._turn.stt.cancel()
        self._turn = None

    # -- speculative replies (see speculation.py) ----------------------------------------------

    def _maybe_speculate(self, turn: _Turn, speech_end_ms: float) -> None:
        busy = self._active_turn_id is not None or (self._reply_task is not None and not self._reply_task.done())
        if not self.settings.vad.speculate or busy or self._speculation is not None:
            return
        spec = speculation.Speculation(turn.turn_id, len(self.conversation.history))
        stt = turn.stt.final(min(self._history_audio.end_ms, speech_end_ms + 100.0))
        spec.task = self._spawn(self._speculate(spec, turn, stt))
        self._speculation = spec

    async def _speculate(self, spec: speculation.Speculation, turn: _Turn, stt: asyncio.Task) -> None:
        speculation.run_as(spec)
        await self._voice_turn(turn, stt)

    def _commit_speculation(self, spec: speculation.Speculation, turn: _Turn) -> None:
        """The turn ended as speculated: send what was held, in order, and release its audio."""
        self._speculation = None
        spec.committed = True
        for event in spec.held_events:
            self.outbox.emit(event)
        spec.held_events.clear()
        for response_id in spec.response_ids:
            self.outbox.release(response_id)
        turn.timeline.counters["speculation"] = "hit"
        self.metrics.speculations.labels("hit").inc()
        self._active_turn_id = turn.turn_id
        self._turns.response_started()
        self._reply_task = spec.task

    def _discard_speculation(self, turn: _Turn) -> None:
        """The user went on (or the turn was dropped): throw the prepared reply away at once."""
        spec = self._speculation
        if spec is None or spec.turn_id != turn.turn_id:
            return
        self._speculation = None
        spec.discarded = True
        spec.task.cancel()
        for response_id in spec.response_ids:
            self.outbox.flush(response_id)
        spec.held_events.clear()
        del self.conversation.history[spec.history_len :]
        wasted_s = spec.wasted_cpu_s()
        counters = turn.timeline.counters
        counters["speculation_misses"] = counters.get("speculation_misses", 0) + 1
        counters["speculation_wasted_cpu_ms"] = round(counters.get("speculation_wasted_cpu_ms", 0.0) + 1000 * wasted_s, 1)
        self.metrics.speculations.labels("miss").inc()
        self.metrics.speculation_wasted_cpu.inc(wasted_s)

    # -- replies ------------------------------------------------------------------------------

    def _start_reply_task(self, turn: _Turn, reply, *args) -> None:
        """Run a turn's reply after the previous one has finished its bookkeeping (history)."""
        previous = self._reply_task
        self._active_turn_id = turn.turn_id
        self._turns.response_started()  # thinking counts: speech now is a barge-in
        self._reply_record = None
        self._reply_task = self._spawn(self._after(previous, reply, *args))

    @staticmethod
    async def _after(previous: asyncio.Task | None, reply, *args):
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        return await reply(*args)

    def _release_turn(self, turn: _Turn) -> None:
        if self._active_turn_id == turn.turn_id:
            self._active_turn_id = None
            self._turns.response_finished()

    async def _voice_turn(self, turn: _Turn, stt: asyncio.Task) -> None:
        try:
            transcript = await asyncio.wait_for(asyncio.shield(stt), self.settings.budgets.stt_final_ms / 1000.0)
        except (EngineError, TimeoutError) as exc:  # the next level of the cascade: the cached apology
            stt.cancel()
            why = "budget" if isinstance(exc, TimeoutError) else "failed"
            self.metrics.fallbacks.labels("stt", why).inc()
            turn.timeline.counters["stt_fallback"] = why
            if why == "failed":
                self.error("stage_failed", str(exc))
            return await self._reply(turn, None, fixed=SORRY)
        except asyncio.CancelledError:
            stt.cancel()
            self._release_turn(turn)
            raise
        turn.timeline.mark("stt_final", now())
        turn.timeline.counters.update(
            stt_reused_partial=turn.stt.reused_partial, stt_discarded_finals=turn.stt.discarded_finals
        )
        self._emit(EventKind.TRANSCRIPT_FINAL, turn_id=turn.turn_id, transcript=transcript.text)
        if transcript.text.strip():
            await self._reply(turn, transcript.text)
        else:
            self._release_turn(turn)

    async def _text_turn(self, text: str) -> None:
        if self._turn is not None:
            self._discard_speculation(self._turn)
        self._interrupt("new_input")
        turn = _Turn(f"t{next(self._ids)}", self._history_audio.end_ms, TurnTimeline(origin="input_end"))
        turn.timeline.mark("input_end", now())
        self._start_reply_task(turn, self._reply, turn, text)

    def _answer_for(self, user_text: str | None, fixed: str | None) -> Answer:
        if fixed is not None:
            return Answer("cached", "fallback", text=fixed)
        if self.engines.answerer is None:
            return Answer("small", "routing_off", llm=self.engines.llm)
        return self.engines.answerer.plan(user_text, self.conversation.last_reply())

    async def _reply(self, turn: _Turn, user_text: str | None, fixed: str | None = None) -> None:
        """Reply to `user_text`, or speak `fixed` (a cascade answer for a turn that got no text)."""
        answer = self._answer_for(user_text, fixed)
        counters = turn.timeline.counters
        counters.update(route=answer.route, route_reason=answer.reason, route_ms=answer.route_ms)
        if answer.confidence is not None:
            counters["route_confidence"] = round(answer.confidence, 3)
        if answer.action is not None:
            counters["action"] = answer.action.value
        self.metrics.routes.labels(answer.route).inc()
        if answer.action is InstantAction.CANCEL:  # "stop": the barge-in already silenced the reply
            return self._release_turn(turn)
        record = ReplyRecord(f"r{next(self._ids)}")
        self._reply_record = record
        self._reply_timelines[record.response_id] = turn.timeline
        messages = self.conversation.prompt(self.config.instructions, user_text or "")
        if user_text is not None:
            self.conversation.add_user(user_text)
            self._log_text("user", user_text)
        spec = speculation.current()
        if spec is not None:
            spec.response_ids.append(record.response_id)
        self.outbox.open_reply(record.response_id, self.config.output_rate_hz, held=spec is not None)
        self._emit(EventKind.RESPONSE_CREATED, turn_id=turn.turn_id, response_id=record.response_id)
        reply = Reply(self.session_id, turn.turn_id, record, turn.timeline, answer.llm or self.engines.llm,
                      self.engines.tts, self.outbox, self.config.output_rate_hz, self._emit_event)
        tts = self.settings.tts
        plan = ReplyPlan(messages, self.settings.llm.max_tokens, tts.first_piece_min_words, tts.piece_min_words,
                         tts.stream_text)
        status, reason, level = "completed", None, "none"
        try:
            try:
                level = await produce(reply, answer, plan, self.phrases, counters)
            except EngineError as exc:
                self.error("stage_failed", str(exc))
                self.metrics.fallbacks.labels(exc.stage, "failed").inc()
                reason = "fallback"
                level = await last_resort(reply, self.phrases, exc)
                if level == "partial":  # the answer broke off after the user started hearing it
                    status, reason = "failed", str(exc)
            self.outbox.end_reply(record.response_id)
            await self.outbox.wait_sent(record.response_id)
            if self.outbox.sent_ms(record.response_id):
                self._emit(EventKind.OUTPUT_AUDIO_STOPPED, response_id=record.response_id,
                           audio_ms=round(self.outbox.sent_ms(record.response_id)))
        except asyncio.CancelledError:
            status, reason = "cancelled", "interrupted"
            raise
        except Exception as exc:  # a bug must not end the session: report it and go on
            log.exception("session %s: reply failed", self.session_id)
            status, reason = "failed", f"internal error: {type(exc).__name__}"
            self.outbox.flush(record.response_id)
            self.error("stage_failed", reason)
        finally:
            counters["answered_by"] = level
            for attempt in counters.get("llm_attempts", []):
                if attempt["outcome"] != "answered":
                    self.metrics.fallbacks.labels("llm", attempt["outcome"]).inc()
            self._count_answer(level, status)
            self._finish_reply(turn, record, status, reason)

    def _count_answer(self, level: str, status: str) -> None:
        """Consecutive last resorts mean the assistant cannot help: escalate (e.g. a transfer)."""
        if speculation.current() is not None:  # a discarded speculation answered nobody
            return
        self.metrics.answers.labels(level).inc()
        if status == "cancelled":
            return
        if level not in ("cached", "none"):
            self._last_resorts_in_row = 0
            return
        self._last_resorts_in_row += 1
        if self._last_resorts_in_row >= self.settings.budgets.escalate_after_failures:
            self._last_resorts_in_row = 0
            self.metrics.escalations.inc()
            self._emit(EventKind.ESCALATION, reason="repeated_failures")

    def _finish_reply(self, turn: _Turn, record: ReplyRecord, status: str, reason: str | None) -> None:
        self._release_turn(turn)
        self.outbox.end_reply(record.response_id)
        if speculation.current() is not None:  # discarded: no history, no events, no metrics
            return
        heard = record.text if status == "completed" else record.played_text(self.outbox.played_ms(record.response_id))
        self.conversation.set_reply(heard)
        self.conversation.log_reply(heard)
        self._log_text("assistant", heard)
        data = {"status": status, "text": record.text, "played_text": heard}
        if reason:
            data["reason"] = reason
        self._emit(EventKind.RESPONSE_DONE, turn_id=turn.turn_id, response_id=record.response_id, **data)
        summary = turn.timeline.summary()
        summary.update(llm_tokens=record.tokens, audio_out_ms=round(self.outbox.sent_ms(record.response_id), 1))
        self._emit(EventKind.TURN_METRICS, turn_id=turn.turn_id, response_id=record.response_id,
                   input="text" if turn.timeline.origin == "input_end" else "audio", **summary)
        self.metrics.observe_turn(summary, "text" if turn.timeline.origin == "input_end" else "audio", status)

    def _interrupt(self, reason: str) -> None:
        task, record = self._reply_task, self._reply_record
        if task is None or task.done():
            return
        task.cancel()
        if record is not None:  # a reply had started: silence it now, before anything else is sent
            self.outbox.flush(record.response_id)
            self._emit(EventKind.OUTPUT_AUDIO_CLEARED, response_id=record.response_id, reason=reason)
        if reason == "barge_in":
            self.metrics.interruptions.inc()

    async def _wait_reply_finished(self) -> None:
        if self._reply_task is not None and not self._reply_task.done():
            await asyncio.wait([self._reply_task])

    def _truncate(self, response_id: str, audio_end_ms: float) -> None:
        """The client says how much of a reply it played: rewrite that reply in the history."""
        record = self._reply_record
        if record is None or record.response_id != response_id or not isinstance(audio_end_ms, (int, float)):
            return self.error("invalid_event", f"no reply {response_id!r} to truncate", event_type="conversation.item.truncate")
        self.conversation.set_reply(record.played_text(max(0.0, float(audio_end_ms))))

    def _on_first_audio(self, response_id: str, t: float) -> None:
        timeline = self._reply_timelines.pop(response_id, None)
        if timeline is not None:
            timeline.mark("first_audio_sent", t)

    # -- plumbing -----------------------------------------------------------------------------

    def _emit(self, kind: EventKind, turn_id: str | None = None, response_id: str | None = None, **data) -> None:
        self._emit_event(ServerEvent(kind, self.session_id, turn_id=turn_id, response_id=response_id, data=data))

    def _emit_event(self, event: ServerEvent) -> None:
        """Send an event, or hold it if it belongs to a speculative reply (dropped if discarded)."""
        spec = speculation.current()
        if spec is None:
            self.outbox.emit(event)
        elif spec.held:
            spec.held_events.append(event)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _log_text(self, role: str, text: str) -> None:
        if self.settings.server.log_transcripts:
            log.info("session %s %s: %s", self.session_id, role, text)
