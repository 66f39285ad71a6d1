"""A session's replies: the held speculation, the live reply, barge-in and what the user heard.

`Session` keeps the input loop and turn-taking and asks this component to prepare (a held
speculation), commit, discard, start, interrupt or truncate replies. Each reply is a
`ReplyHandle` (reply/handle.py), which decides whether its events are sent, held or dropped; only
a reply that speaks writes the history and is counted, here in `_finish`.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.base import LanguageModel, TextToSpeech, Transcript
from voice_pipeline.errors import EngineError
from voice_pipeline.metrics import PipelineMetrics, TurnReport, TurnTimeline
from voice_pipeline.protocol.events import EventKind, ServerEvent, now
from voice_pipeline.protocol.session_config import SessionConfig
from voice_pipeline.reply.answer import Answer, Answerer, Level
from voice_pipeline.reply.cascade import last_resort, produce
from voice_pipeline.reply.handle import ReplyHandle
from voice_pipeline.reply.phrasebook import SORRY, Phrasebook
from voice_pipeline.reply.speaking import Reply, ReplyPlan, ReplyRecord
from voice_pipeline.reply.tools import SessionTools
from voice_pipeline.routing.instant import InstantAction
from voice_pipeline.session.conversation import Conversation
from voice_pipeline.session.load import StageLoad
from voice_pipeline.session.outbox import Outbox
from voice_pipeline.session.user_turn import UserTurn

log = logging.getLogger("voice_pipeline.reply.replies")


class ReplyStatus(enum.StrEnum):
    """How a reply ended, as `response.done` says."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"  # interrupted (barge-in, the client's cancel, a reset)
    FAILED = "failed"  # broke off after the user started hearing it, or a bug


class Floor(Protocol):
    """Who has the floor, as turn-taking sees it: while a reply runs, user speech is a barge-in."""

    def response_started(self) -> None: ...

    def response_finished(self) -> None: ...


class ReplyEngines(Protocol):
    llm: LanguageModel | None
    tts: TextToSpeech | None
    answerer: Answerer | None
    speculate: bool
    load: StageLoad | None


Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Replies:
    def __init__(self, session_id: str, settings: Settings, engines: ReplyEngines, metrics: PipelineMetrics,
                 outbox: Outbox, conversation: Conversation, phrases: Phrasebook, *, floor: Floor,
                 config: Callable[[], SessionConfig], spawn: Spawn) -> None:
        self.session_id, self.settings, self.engines, self.metrics = session_id, settings, engines, metrics
        self.outbox, self.conversation, self.phrases = outbox, conversation, phrases
        self._floor, self._config, self._spawn = floor, config, spawn
        self._response_ids = itertools.count(1)
        self.speculation: ReplyHandle | None = None  # a reply held during the endpoint wait
        self.current: ReplyHandle | None = None  # the live reply (or the last one)
        self._active_turn_id: str | None = None  # the turn whose live reply holds the floor
        self._timelines: dict[str, TurnTimeline] = {}  # response id -> its turn's marks, until first audio
        self._last_resorts_in_row = 0
        self.tools = SessionTools()  # the client's tool calls waiting for their outputs
        self.on_effect: Callable[[object], None] | None = None  # a local tool's effect (a timer), once its reply is given

    @property
    def running(self) -> bool:
        """A reply (live or held) is still working."""
        live = self.current is not None and self.current.running
        return live or (self.speculation is not None and self.speculation.running)

    # -- speculation: a held ReplyHandle (reply/lifecycle.py) ---------------------------------

    def speculate(self, turn: UserTurn, stt: asyncio.Task[Transcript]) -> None:
        """At a pause: prepare the reply to the words so far, held until the turn ends."""
        busy = self._active_turn_id is not None or (self.current is not None and self.current.running)
        if not self.engines.speculate or busy or self.speculation is not None:
            return
        if self.engines.load is not None and self.engines.load.sheds_speculation():
            self.metrics.shed.labels("speculation").inc()  # overload: answer at the endpoint instead
            return
        spec = self._new_handle(turn, held=True)
        spec.task = self._spawn(self._voice_turn(spec, turn, stt))
        self.speculation = spec

    def commit(self, turn: UserTurn) -> bool:
        """The turn ended: if its reply was prepared, send what was held, in order, and go live."""
        spec = self.speculation
        if spec is None or spec.turn_id != turn.turn_id:
            return False
        self.speculation = None
        spec.commit()
        turn.timeline.report.speculation = "hit"
        self.metrics.speculations.labels("hit").inc()
        self._take_floor(turn)
        self.current = spec
        return True

    def discard(self, turn: UserTurn) -> None:
        """The user went on (or the turn was dropped): throw the prepared reply away at once."""
        spec = self.speculation
        if spec is None or spec.turn_id != turn.turn_id:
            return
        self.speculation = None
        wasted_s = spec.discard()
        report = turn.timeline.report
        report.speculation_misses += 1
        report.speculation_wasted_cpu_ms += 1000 * wasted_s
        self.metrics.speculations.labels("miss").inc()
        self.metrics.speculation_wasted_cpu.inc(wasted_s)

    # -- live replies -------------------------------------------------------------------------

    def start_voice(self, turn: UserTurn, stt: asyncio.Task[Transcript]) -> None:
        """Answer a spoken turn once its final transcript is in."""
        self._start_live(turn, lambda handle: self._voice_turn(handle, turn, stt))

    def start_text(self, turn: UserTurn, text: str) -> None:
        self._start_live(turn, lambda handle: self._reply(handle, turn, text))

    def start_tool_continuation(self, turn: UserTurn) -> bool:
        """`response.create` after the outputs of every pending tool call: the model answers with them."""
        if not self.tools.ready:
            return False
        self._start_live(turn, lambda handle: self._reply(handle, turn, None))
        return True

    def start_fixed(self, turn: UserTurn, text: str) -> None:
        """Speak a fixed phrase (an off-state, a fallback) instead of answering."""
        self._start_live(turn, lambda handle: self._reply(handle, turn, None, fixed=text))

    def start_said(self, turn: UserTurn, text: str, reason: str) -> None:
        """The assistant speaks on its own (a timer going off): an instant answer, after the replies before it."""
        async def body(handle: ReplyHandle) -> None:
            self.conversation.begin_unprompted()
            await self._reply(handle, turn, None, fixed=Answer(Level.INSTANT, reason, text=text))

        self._start_live(turn, body)

    def _start_live(self, turn: UserTurn, body: Callable[[ReplyHandle], Awaitable[None]]) -> None:
        """Run a live reply after the previous one has finished its bookkeeping (history)."""
        previous = self.current.task if self.current is not None else None
        self._take_floor(turn)  # thinking counts: speech now is a barge-in
        handle = self._new_handle(turn, held=False)

        async def after_previous() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await body(handle)

        handle.task = self._spawn(after_previous())
        self.current = handle

    def interrupt(self, reason: str) -> None:
        if self.current is None or not self.current.interrupt(reason):
            return
        if reason == "barge_in":
            self.metrics.interruptions.inc()

    async def wait_finished(self) -> None:
        if self.current is not None and self.current.task is not None and not self.current.task.done():
            await asyncio.wait([self.current.task])

    def cancel_all(self) -> None:
        """The session ends: stop the live reply (the session cancels its other tasks itself)."""
        for handle in (self.current, self.speculation):
            if handle is not None and handle.task is not None and not handle.task.done():
                handle.task.cancel()

    def _new_handle(self, turn: UserTurn, held: bool) -> ReplyHandle:
        return ReplyHandle(self.session_id, turn.turn_id, self.outbox, self.conversation, held)

    def _take_floor(self, turn: UserTurn) -> None:
        self._active_turn_id = turn.turn_id
        self._floor.response_started()

    def _release_floor(self, turn: UserTurn) -> None:
        if self._active_turn_id == turn.turn_id:
            self._active_turn_id = None
            self._floor.response_finished()

    # -- one reply, from the transcript to response.done --------------------------------------

    async def _voice_turn(self, handle: ReplyHandle, turn: UserTurn, stt: asyncio.Task[Transcript]) -> None:
        try:
            async with asyncio.timeout(self.settings.budgets.stt_final_ms / 1000.0):
                transcript = await asyncio.shield(stt)
        except (EngineError, TimeoutError) as exc:  # the next level of the cascade: the cached apology
            stt.cancel()
            why = "budget" if isinstance(exc, TimeoutError) else "failed"
            self.metrics.fallbacks.labels("stt", why).inc()
            turn.timeline.report.stt_fallback = why
            if why == "failed":
                self._reply_error(handle, "stage_failed", str(exc))
            return await self._reply(handle, turn, None, fixed=SORRY)
        except asyncio.CancelledError:
            stt.cancel()
            self._release_floor(turn)
            raise
        turn.timeline.mark("stt_final", now())
        if turn.stt is not None:
            turn.timeline.report.stt_reused_partial = turn.stt.reused_partial
            turn.timeline.report.stt_discarded_finals = turn.stt.discarded_finals
        handle.event(EventKind.TRANSCRIPT_FINAL, transcript=transcript.text)
        if transcript.text.strip():
            await self._reply(handle, turn, transcript.text)
        else:
            self._release_floor(turn)

    def _answer_for(self, user_text: str | None, fixed: str | Answer | None) -> Answer:
        if isinstance(fixed, Answer):
            return fixed
        if fixed is not None:
            return Answer(Level.CACHED, "fallback", text=fixed)
        if self.engines.answerer is None:
            return Answer(Level.SMALL, "routing_off", llm=self.engines.llm)
        config = self._config()
        tools = self.tools.request(config.tools, config.tool_choice, user_text)
        return self.engines.answerer.plan(user_text or "", self.conversation.last_reply(), tools=tools)

    async def _reply(self, handle: ReplyHandle, turn: UserTurn, user_text: str | None,
                     fixed: str | Answer | None = None) -> None:
        """Reply to `user_text`, or speak `fixed` (a cascade answer for a turn that got no text)."""
        answer = self._answer_for(user_text, fixed)
        report = turn.timeline.report
        report.route, report.route_reason, report.route_ms = answer.route, answer.reason, answer.route_ms
        if answer.confidence is not None:
            report.route_confidence = round(answer.confidence, 3)
        if answer.action is not None:
            report.action = answer.action.value
        self.metrics.routes.labels(answer.route).inc()
        if answer.action is InstantAction.CANCEL:  # "stop": the barge-in already silenced the reply
            return self._release_floor(turn)
        config = self._config()
        record = ReplyRecord(f"r{next(self._response_ids)}")
        self._timelines[record.response_id] = turn.timeline
        messages = answer.messages or self.conversation.prompt(config.instructions, user_text or "")
        if user_text is not None:
            self.conversation.add_user(user_text)
            self._log_text("user", user_text)
        handle.open_audio(record, config.output_rate_hz)
        handle.event(EventKind.RESPONSE_CREATED, response_id=record.response_id)
        reply = Reply(record, turn.timeline, session_id=self.session_id, turn_id=turn.turn_id,
                      tts=self.engines.tts if config.audio_out else None, outbox=self.outbox,
                      output_rate_hz=config.output_rate_hz, emit=handle.emit,
                      later_lead_ms=self.settings.tts.later_lead_ms)
        tts = self.settings.tts
        plan = ReplyPlan(messages, self.settings.llm.max_tokens, tts.first_piece_min_words, tts.piece_min_words,
                         tts.stream_text, first_piece_max_words=tts.first_piece_max_words)
        status, reason, level = ReplyStatus.COMPLETED, None, Level.NONE
        try:
            try:
                level = await self._produce(reply, answer, plan, report)
            except EngineError as exc:
                self._reply_error(handle, "stage_failed", str(exc))
                self.metrics.fallbacks.labels(exc.stage, "failed").inc()
                reason = "fallback"
                level = await last_resort(reply, self.phrases, exc)
                if level is Level.PARTIAL:  # the answer broke off after the user started hearing it
                    status, reason = ReplyStatus.FAILED, str(exc)
            self.outbox.end_reply(record.response_id)
            await self.outbox.wait_sent(record.response_id)
            if self.outbox.sent_ms(record.response_id):
                handle.emit(ServerEvent(EventKind.OUTPUT_AUDIO_STOPPED, self.session_id, response_id=record.response_id,
                                        data={"audio_ms": round(self.outbox.sent_ms(record.response_id))}))
        except asyncio.CancelledError:
            status, reason = ReplyStatus.CANCELLED, "interrupted"
            raise
        except Exception as exc:  # a bug must not end the session: report it and go on
            log.exception("session %s: reply failed", self.session_id)
            status, reason = ReplyStatus.FAILED, f"internal error: {type(exc).__name__}"
            self.outbox.flush(record.response_id)
            self._reply_error(handle, "stage_failed", reason)
        finally:
            report.answered_by = level
            self._count_fallbacks(turn.timeline)
            if handle.finish():  # a held or discarded reply answered nobody: no history, events or metrics
                self._count_answer(handle, level, status)
                self._finish(handle, turn, record, status, reason)
                if answer.effect is not None and self.on_effect is not None:
                    self.on_effect(answer.effect)
            else:
                self._release_floor(turn)
                self.outbox.end_reply(record.response_id)
                self._timelines.pop(record.response_id, None)

    async def _produce(self, reply: Reply, answer: Answer, plan: ReplyPlan, report: TurnReport) -> Level:
        """`produce`, counted in the worker's load while it runs (session/load.py)."""
        load = self.engines.load
        if load is not None:
            load.reply_started()
        try:
            return await produce(reply, answer, plan, self.phrases, report, self.settings.budgets.first_audio_ms / 1000.0)
        finally:
            if load is not None:
                load.reply_finished()

    def _count_fallbacks(self, timeline: TurnTimeline) -> None:
        report = timeline.report
        if report.first_audio_budget_miss:
            self.metrics.fallbacks.labels("first_audio", "budget").inc()
        for attempt in report.llm.attempts if report.llm is not None else []:
            if attempt.outcome.value != "answered":
                self.metrics.fallbacks.labels("llm", attempt.outcome.value).inc()

    def _reply_error(self, handle: ReplyHandle, code: str, message: str) -> None:
        """An error of the reply path: counted like any, and sent only if the reply is (held with it)."""
        self.metrics.errors.labels(code).inc()
        log.info("session %s error %s", self.session_id, code)
        handle.emit(ServerEvent(EventKind.ERROR, self.session_id,
                                data={"error": {"code": code, "message": message, "recoverable": True}}))

    def _count_answer(self, handle: ReplyHandle, level: Level, status: ReplyStatus) -> None:
        """Consecutive last resorts mean the assistant cannot help: escalate (e.g. a transfer)."""
        self.metrics.answers.labels(level).inc()
        if status is ReplyStatus.CANCELLED:
            return
        if level not in (Level.CACHED, Level.NONE):
            self._last_resorts_in_row = 0
            return
        self._last_resorts_in_row += 1
        if self._last_resorts_in_row >= self.settings.budgets.escalate_after_failures:
            self._last_resorts_in_row = 0
            self.metrics.escalations.inc()
            handle.emit(ServerEvent(EventKind.ESCALATION, self.session_id, data={"reason": "repeated_failures"}))

    def _finish(self, handle: ReplyHandle, turn: UserTurn, record: ReplyRecord, status: ReplyStatus,
                reason: str | None) -> None:
        """The reply's bookkeeping: the only place a reply is written to the history."""
        self._release_floor(turn)
        self.outbox.end_reply(record.response_id)
        self._timelines.pop(record.response_id, None)  # a reply that never sent audio
        heard = record.text if status is ReplyStatus.COMPLETED else record.played_text(self.outbox.played_ms(record.response_id))
        self.conversation.set_reply(heard)
        self.conversation.log_reply(heard)
        self._log_text("assistant", heard)
        data: dict[str, object] = {"status": status, "text": record.text, "played_text": heard}
        if reason:
            data["reason"] = reason
        handle.event(EventKind.RESPONSE_DONE, response_id=record.response_id, **data)
        summary = turn.timeline.summary()
        summary.update(llm_tokens=record.tokens, audio_out_ms=round(self.outbox.sent_ms(record.response_id), 1))
        input_kind = "text" if turn.timeline.origin == "input_end" else "audio"
        handle.event(EventKind.TURN_METRICS, response_id=record.response_id, input=input_kind, **summary)
        self.metrics.observe_turn(summary, input_kind, status)

    # -- what the user heard ------------------------------------------------------------------

    def keep_heard(self, response_id: str, heard_ms: float) -> bool:
        """Rewrite the last reply in the history to the words heard in its first `heard_ms`;
        False if `response_id` is not the last reply or `heard_ms` is not a finite number."""
        if not math.isfinite(heard_ms):  # NaN compares false everywhere: it would cut the whole reply
            return False
        record = self.current.record if self.current is not None else None
        if record is None or record.response_id != response_id:
            return False
        self.conversation.set_reply(record.played_text(max(0.0, float(heard_ms))))
        return True

    def on_first_audio(self, response_id: str, t: float) -> None:
        """The outbox sent a reply's first audio at `t`: the turn's last latency mark."""
        timeline = self._timelines.pop(response_id, None)
        if timeline is not None:
            timeline.mark("first_audio_sent", t)

    def _log_text(self, role: str, text: str) -> None:
        if self.settings.server.log_transcripts:
            log.info("session %s %s: %s", self.session_id, role, text)
