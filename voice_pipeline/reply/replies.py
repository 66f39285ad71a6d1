"""The reply half of a Session: speculative replies, the reply lifecycle and barge-in.

A mixin of `Session` (split out to keep each file to one idea): it uses the session's outbox,
conversation, turn-taking machine, engines, settings and metrics, set up in `Session.__init__`.
Each reply is a `ReplyHandle` (reply/handle.py): the held speculation is `_speculation`, the live
reply `_current_reply`. The reply path emits through its handle, which decides whether an event is sent,
held or dropped; only a reply that speaks writes the history and is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from voice_pipeline.errors import EngineError
from voice_pipeline.protocol.events import EventKind, ServerEvent, now
from voice_pipeline.reply.answer import Answer
from voice_pipeline.reply.cascade import last_resort, produce
from voice_pipeline.reply.handle import ReplyHandle
from voice_pipeline.reply.phrasebook import SORRY
from voice_pipeline.reply.speaking import Reply, ReplyPlan, ReplyRecord
from voice_pipeline.routing.instant import InstantAction
from voice_pipeline.session.user_turn import UserTurn

log = logging.getLogger("voice_pipeline.session.session")


class SessionReplies:
    # -- speculative replies (a held ReplyHandle, see reply/lifecycle.py) ------------------------

    def _maybe_speculate(self, turn: UserTurn, speech_end_ms: float) -> None:
        busy = self._active_turn_id is not None or (self._current_reply is not None and self._current_reply.running)
        if not self.engines.speculate or busy or self._speculation is not None:
            return
        spec = self._new_reply(turn, held=True)
        stt = turn.stt.final(speech_end_ms, self._history_audio.end_ms)
        spec.task = self._spawn(self._speculate(spec, turn, stt))
        self._speculation = spec

    def _new_reply(self, turn: UserTurn, held: bool) -> ReplyHandle:
        return ReplyHandle(self.session_id, turn.turn_id, self.outbox, self.conversation, held)

    async def _speculate(self, spec: ReplyHandle, turn: UserTurn, stt: asyncio.Task) -> None:
        if turn.eot is not None:
            # The end-of-turn score decides when the turn is committed; on a small CPU it would be
            # slowed by the LLM and TTS of this very reply, so it goes first (briefly).
            with contextlib.suppress(Exception):
                await asyncio.shield(stt)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await turn.eot_scored.wait()
        await self._voice_turn(spec, turn, stt)

    def _commit_speculation(self, spec: ReplyHandle, turn: UserTurn) -> None:
        """The turn ended as speculated: send what was held, in order, and release its audio."""
        self._speculation = None
        spec.commit()
        turn.timeline.counters["speculation"] = "hit"
        self.metrics.speculations.labels("hit").inc()
        self._active_turn_id = turn.turn_id
        self._turns.response_started()
        self._current_reply = spec

    def _discard_speculation(self, turn: UserTurn) -> None:
        """The user went on (or the turn was dropped): throw the prepared reply away at once."""
        spec = self._speculation
        if spec is None or spec.turn_id != turn.turn_id:
            return
        self._speculation = None
        wasted_s = spec.discard()
        counters = turn.timeline.counters
        counters["speculation_misses"] = counters.get("speculation_misses", 0) + 1
        counters["speculation_wasted_cpu_ms"] = round(counters.get("speculation_wasted_cpu_ms", 0.0) + 1000 * wasted_s, 1)
        self.metrics.speculations.labels("miss").inc()
        self.metrics.speculation_wasted_cpu.inc(wasted_s)

    # -- replies ------------------------------------------------------------------------------

    def _start_reply_task(self, turn: UserTurn, reply, *args) -> None:
        """Run a turn's live reply, `reply(handle, *args)`, after the previous one has finished its
        bookkeeping (history)."""
        previous = self._current_reply.task if self._current_reply is not None else None
        self._active_turn_id = turn.turn_id
        self._turns.response_started()  # thinking counts: speech now is a barge-in
        handle = self._new_reply(turn, held=False)
        handle.task = self._spawn(self._after(previous, reply, handle, *args))
        self._current_reply = handle

    @staticmethod
    async def _after(previous: asyncio.Task | None, reply, *args):
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        return await reply(*args)

    def _release_turn(self, turn: UserTurn) -> None:
        if self._active_turn_id == turn.turn_id:
            self._active_turn_id = None
            self._turns.response_finished()

    async def _voice_turn(self, handle: ReplyHandle, turn: UserTurn, stt: asyncio.Task) -> None:
        try:
            async with asyncio.timeout(self.settings.budgets.stt_final_ms / 1000.0):
                transcript = await asyncio.shield(stt)
        except (EngineError, TimeoutError) as exc:  # the next level of the cascade: the cached apology
            stt.cancel()
            why = "budget" if isinstance(exc, TimeoutError) else "failed"
            self.metrics.fallbacks.labels("stt", why).inc()
            turn.timeline.counters["stt_fallback"] = why
            if why == "failed":
                self._reply_error(handle, "stage_failed", str(exc))
            return await self._reply(handle, turn, None, fixed=SORRY)
        except asyncio.CancelledError:
            stt.cancel()
            self._release_turn(turn)
            raise
        turn.timeline.mark("stt_final", now())
        turn.timeline.counters.update(
            stt_reused_partial=turn.stt.reused_partial, stt_discarded_finals=turn.stt.discarded_finals
        )
        handle.event(EventKind.TRANSCRIPT_FINAL, transcript=transcript.text)
        if transcript.text.strip():
            await self._reply(handle, turn, transcript.text)
        else:
            self._release_turn(turn)

    def _answer_for(self, user_text: str | None, fixed: str | None) -> Answer:
        if fixed is not None:
            return Answer("cached", "fallback", text=fixed)
        if self.engines.answerer is None:
            return Answer("small", "routing_off", llm=self.engines.llm)
        return self.engines.answerer.plan(user_text, self.conversation.last_reply())

    async def _reply(self, handle: ReplyHandle, turn: UserTurn, user_text: str | None, fixed: str | None = None) -> None:
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
        self._reply_timelines[record.response_id] = turn.timeline
        messages = self.conversation.prompt(self.config.instructions, user_text or "")
        if user_text is not None:
            self.conversation.add_user(user_text)
            self._log_text("user", user_text)
        handle.open_audio(record, self.config.output_rate_hz)
        handle.event(EventKind.RESPONSE_CREATED, response_id=record.response_id)
        reply = Reply(record, turn.timeline, session_id=self.session_id, turn_id=turn.turn_id,
                      llm=answer.llm or self.engines.llm, tts=self.engines.tts, outbox=self.outbox,
                      output_rate_hz=self.config.output_rate_hz, emit=handle.emit)
        tts = self.settings.tts
        plan = ReplyPlan(messages, self.settings.llm.max_tokens, tts.first_piece_min_words, tts.piece_min_words,
                         tts.stream_text)
        status, reason, level = "completed", None, "none"
        try:
            try:
                level = await produce(reply, answer, plan, self.phrases, counters,
                                      self.settings.budgets.first_audio_ms / 1000.0)
            except EngineError as exc:
                self._reply_error(handle, "stage_failed", str(exc))
                self.metrics.fallbacks.labels(exc.stage, "failed").inc()
                reason = "fallback"
                level = await last_resort(reply, self.phrases, exc)
                if level == "partial":  # the answer broke off after the user started hearing it
                    status, reason = "failed", str(exc)
            self.outbox.end_reply(record.response_id)
            await self.outbox.wait_sent(record.response_id)
            if self.outbox.sent_ms(record.response_id):
                handle.emit(ServerEvent(EventKind.OUTPUT_AUDIO_STOPPED, self.session_id, response_id=record.response_id,
                                        data={"audio_ms": round(self.outbox.sent_ms(record.response_id))}))
        except asyncio.CancelledError:
            status, reason = "cancelled", "interrupted"
            raise
        except Exception as exc:  # a bug must not end the session: report it and go on
            log.exception("session %s: reply failed", self.session_id)
            status, reason = "failed", f"internal error: {type(exc).__name__}"
            self.outbox.flush(record.response_id)
            self._reply_error(handle, "stage_failed", reason)
        finally:
            counters["answered_by"] = level
            if counters.get("first_audio_budget_miss"):
                self.metrics.fallbacks.labels("first_audio", "budget").inc()
            for attempt in counters.get("llm_attempts", []):
                if attempt["outcome"] != "answered":
                    self.metrics.fallbacks.labels("llm", attempt["outcome"]).inc()
            if handle.finish():  # a held or discarded reply answered nobody: no history, events or metrics
                self._count_answer(handle, level, status)
                self._finish_reply(handle, turn, record, status, reason)
            else:
                self._release_turn(turn)
                self.outbox.end_reply(record.response_id)
                self._reply_timelines.pop(record.response_id, None)

    def _reply_error(self, handle: ReplyHandle, code: str, message: str) -> None:
        """An error of the reply path: counted like any, and sent only if the reply is (held with it)."""
        self.metrics.errors.labels(code).inc()
        log.info("session %s error %s", self.session_id, code)
        handle.emit(ServerEvent(EventKind.ERROR, self.session_id,
                                data={"error": {"code": code, "message": message, "recoverable": True}}))

    def _count_answer(self, handle: ReplyHandle, level: str, status: str) -> None:
        """Consecutive last resorts mean the assistant cannot help: escalate (e.g. a transfer)."""
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
            handle.emit(ServerEvent(EventKind.ESCALATION, self.session_id, data={"reason": "repeated_failures"}))

    def _finish_reply(self, handle: ReplyHandle, turn: UserTurn, record: ReplyRecord, status: str,
                      reason: str | None) -> None:
        """The reply's bookkeeping: the only place a reply is written to the history."""
        self._release_turn(turn)
        self.outbox.end_reply(record.response_id)
        self._reply_timelines.pop(record.response_id, None)  # a reply that never sent audio
        heard = record.text if status == "completed" else record.played_text(self.outbox.played_ms(record.response_id))
        self.conversation.set_reply(heard)
        self.conversation.log_reply(heard)
        self._log_text("assistant", heard)
        data = {"status": status, "text": record.text, "played_text": heard}
        if reason:
            data["reason"] = reason
        handle.event(EventKind.RESPONSE_DONE, response_id=record.response_id, **data)
        summary = turn.timeline.summary()
        summary.update(llm_tokens=record.tokens, audio_out_ms=round(self.outbox.sent_ms(record.response_id), 1))
        handle.event(EventKind.TURN_METRICS, response_id=record.response_id,
                     input="text" if turn.timeline.origin == "input_end" else "audio", **summary)
        self.metrics.observe_turn(summary, "text" if turn.timeline.origin == "input_end" else "audio", status)

    def _interrupt(self, reason: str) -> None:
        if self._current_reply is None or not self._current_reply.interrupt(reason):
            return
        if reason == "barge_in":
            self.metrics.interruptions.inc()

    async def _wait_reply_finished(self) -> None:
        if self._current_reply is not None and self._current_reply.running:
            assert self._current_reply.task is not None
            await asyncio.wait([self._current_reply.task])

    def _truncate(self, response_id: str, audio_end_ms: float) -> None:
        """The client says how much of a reply it played (conversation.item.truncate)."""
        if not isinstance(audio_end_ms, (int, float)) or not math.isfinite(audio_end_ms):
            # NaN would compare false everywhere and cut the whole reply from the history.
            return self.error("invalid_event", "audio_end_ms must be a finite number", event_type="conversation.item.truncate")
        if not self._keep_heard(response_id, audio_end_ms):
            return self.error("invalid_event", f"no reply {response_id!r} to truncate", event_type="conversation.item.truncate")

    def playback_finished(self, response_id: str, heard_ms: float, interrupted: bool) -> None:
        """A sink that knows what its far end played (a phone line) reports the end of a reply's
        playback, after the reply's response.done: an interrupted reply stays in the history only
        as far as it was heard."""
        if interrupted and math.isfinite(heard_ms) and not self._keep_heard(response_id, heard_ms):
            log.info("session %s: playback report for %s, which is no longer the last reply", self.session_id, response_id)

    def _keep_heard(self, response_id: str, heard_ms: float) -> bool:
        """Rewrite the last reply in the history to the words heard in its first `heard_ms`."""
        record = self._current_reply.record if self._current_reply is not None else None
        if record is None or record.response_id != response_id:
            return False
        self.conversation.set_reply(record.played_text(max(0.0, float(heard_ms))))
        return True

    def _on_first_audio(self, response_id: str, t: float) -> None:
        timeline = self._reply_timelines.pop(response_id, None)
        if timeline is not None:
            timeline.mark("first_audio_sent", t)
