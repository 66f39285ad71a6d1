"""The reply half of a Session: speculative replies, the reply lifecycle and barge-in.

A mixin of `Session` (split out to keep each file to one idea): it uses the session's outbox,
conversation, turn-taking machine, engines, settings and metrics, set up in `Session.__init__`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING

from . import speculation
from .answer_flow import last_resort, produce
from .answering import Answer
from .errors import EngineError
from .events import EventKind, now
from .phrasebook import SORRY
from .responder import Reply, ReplyPlan, ReplyRecord
from .routing.instant import InstantAction

if TYPE_CHECKING:
    from .session import _Turn

log = logging.getLogger("voice_pipeline.session")


class SessionReplies:
    # -- speculative replies (see speculation.py) ----------------------------------------------

    def _maybe_speculate(self, turn: _Turn, speech_end_ms: float) -> None:
        busy = self._active_turn_id is not None or (self._reply_task is not None and not self._reply_task.done())
        if not self.engines.speculate or busy or self._speculation is not None:
            return
        spec = speculation.Speculation(turn.turn_id, len(self.conversation.history))
        self._reply_record = None  # no reply is active; a later barge-in must not clear an old one
        stt = turn.stt.final(speech_end_ms, self._history_audio.end_ms)
        spec.task = self._spawn(self._speculate(spec, turn, stt))
        self._speculation = spec

    async def _speculate(self, spec: speculation.Speculation, turn: _Turn, stt: asyncio.Task) -> None:
        speculation.run_as(spec)
        if turn.eot is not None:
            # The end-of-turn score decides when the turn is committed; on a small CPU it would be
            # slowed by the LLM and TTS of this very reply, so it goes first (briefly).
            with contextlib.suppress(Exception):
                await asyncio.shield(stt)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await turn.eot_scored.wait()
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
            async with asyncio.timeout(self.settings.budgets.stt_final_ms / 1000.0):
                transcript = await asyncio.shield(stt)
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
                level = await produce(reply, answer, plan, self.phrases, counters,
                                      self.settings.budgets.first_audio_ms / 1000.0)
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
            if counters.get("first_audio_budget_miss"):
                self.metrics.fallbacks.labels("first_audio", "budget").inc()
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
        self._reply_timelines.pop(record.response_id, None)  # a reply that never sent audio
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
        if not isinstance(audio_end_ms, (int, float)) or not math.isfinite(audio_end_ms):
            # NaN would compare false everywhere and cut the whole reply from the history.
            return self.error("invalid_event", "audio_end_ms must be a finite number", event_type="conversation.item.truncate")
        if record is None or record.response_id != response_id:
            return self.error("invalid_event", f"no reply {response_id!r} to truncate", event_type="conversation.item.truncate")
        self.conversation.set_reply(record.played_text(max(0.0, float(audio_end_ms))))

    def _on_first_audio(self, response_id: str, t: float) -> None:
        timeline = self._reply_timelines.pop(response_id, None)
        if timeline is not None:
            timeline.mark("first_audio_sent", t)
