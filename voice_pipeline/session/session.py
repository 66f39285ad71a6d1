"""One conversation: input audio -> turn taking -> replies, independent of the transport.

A transport decodes its wire format into `feed_pcm16`/`feed_samples` calls and `handle(command)`,
and gives `run()` a Sink that encodes events and audio. One TaskGroup per session runs the input
loop and the outbox writer; each reply runs in its own task, cancelled on barge-in.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from voice_pipeline.app.settings import Settings
from voice_pipeline.audio import pcm16_to_float
from voice_pipeline.errors import EngineError, ProtocolError
from voice_pipeline.metrics import PipelineMetrics, TurnTimeline
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.protocol.events import EventKind, ServerEvent, now
from voice_pipeline.protocol.session_config import SessionConfig
from voice_pipeline.reply.phrasebook import STT_OFF, Phrasebook
from voice_pipeline.reply.replies import Replies
from voice_pipeline.session.audio_history import AudioHistory
from voice_pipeline.session.audio_in import InputFrame, input_resamplers
from voice_pipeline.session.barge_in import BargeInJudge
from voice_pipeline.session.bounded import DropOldestQueue
from voice_pipeline.session.conversation import Conversation
from voice_pipeline.session.echo import EchoGate
from voice_pipeline.session.end_of_turn import PauseAudioScorer, verdict_at_end
from voice_pipeline.session.engines import Engines
from voice_pipeline.session.outbox import Outbox, Sink
from voice_pipeline.session.text_hints import TextHints
from voice_pipeline.session.transcription import TurnTranscriber
from voice_pipeline.session.turn import (
    Action,
    BargeIn,
    BargeInHeld,
    EndOfTurn,
    SilenceStarted,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnTaking,
)
from voice_pipeline.session.user_turn import UserTurn, VoiceTurn
from voice_pipeline.tools.timers import SessionTimers

log = logging.getLogger("voice_pipeline.session.session")
T = TypeVar("T")
VAD_FRAME_MS = 32.0


class Session:
    def __init__(self, session_id: str, settings: Settings, engines: Engines, metrics: PipelineMetrics) -> None:
        self.session_id, self.settings, self.engines, self.metrics = session_id, settings, engines, metrics
        self.config = SessionConfig.from_settings(settings, engines.system_prompt)
        self.started = False
        self.conversation = Conversation(settings.llm.history_turns)
        self.outbox = Outbox(
            session_id, settings.tts.frame_ms, settings.tts.pacing_lead_ms,
            on_first_audio=lambda response_id, t: self.replies.on_first_audio(response_id, t),
        )
        self._audio_in: DropOldestQueue[InputFrame] = DropOldestQueue(settings.server.audio_in_queue_frames)
        self._turns = TurnTaking(self._turn_config())
        self._pause_eot = PauseAudioScorer.for_session(engines.eot, self._turns, settings.vad)
        self._text_eot = TextHints(engines.eot, self._turns, self._pause_eot, lambda: self._turn)
        self._history_audio = AudioHistory()
        self._resampler, self._vad_resampler = input_resamplers(self.config.input_rate_hz)
        self._vad = engines.make_vad()
        self._vad_pos_ms = 0.0
        self._last_frame = (0.0, 0.0)  # (arrival t, stream position ms at the frame's end)
        self._input_start_ms = 0.0  # with VAD off, the turn is everything since this position
        self._turn: VoiceTurn | None = None
        self._turn_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._barge_in = BargeInJudge(self._turns, self.outbox, metrics, forget=self._forget_turn,
                                      interrupt=lambda: self.replies.interrupt("barge_in"))
        self._echo = EchoGate.for_session(settings.vad, self.outbox, metrics.echo_frames.inc)
        self.replies = Replies(
            session_id, settings, engines, metrics, self.outbox, self.conversation,
            engines.phrases or Phrasebook(22_050), floor=self._barge_in, config=lambda: self.config, spawn=self._spawn,
        )
        self.timers = SessionTimers(self.say, busy=lambda: self._turn is not None or self.replies.running)
        self.replies.on_effect = self.timers.apply

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
            self._vad.close()
            self.timers.close()
            self.replies.cancel_all()
            for task in self._tasks:
                if not task.done():
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
        if not self._audio_in.put(InputFrame(samples, now())):
            self.metrics.audio_in_dropped.inc()

    @property
    def busy(self) -> bool:
        """In the middle of something a stop should not cut: the user speaking, or a reply running."""
        return self._turn is not None or self.replies.running

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
                self.replies.interrupt("cancelled_by_client")
            case cmd.ResetConversation():
                self.replies.interrupt("reset")
                await self.replies.wait_finished()
                self.conversation.reset()
                self._emit(EventKind.RESET_DONE)
            case cmd.ToolOutput(call_id, output):
                if not self.replies.tools.add_output(call_id, output):
                    self.error("invalid_event", f"no tool call {call_id[:64]!r} is waiting for its output",
                               event_type="conversation.item.create")
            case cmd.CreateResponse():
                self._tool_continuation()

    def playback_finished(self, response_id: str, heard_ms: float, interrupted: bool) -> None:
        """A sink that knows what its far end played (a phone line) reports the end of a reply's
        playback, after the reply's response.done: an interrupted reply stays in the history only
        as far as it was heard."""
        if interrupted and not self.replies.keep_heard(response_id, heard_ms):
            log.info("session %s: playback report for %s, which is not the last reply", self.session_id, response_id)

    def _truncate(self, response_id: str, audio_end_ms: float) -> None:
        """The client says how much of a reply it played (conversation.item.truncate)."""
        event_type = "conversation.item.truncate"
        if not isinstance(audio_end_ms, (int, float)) or not math.isfinite(audio_end_ms):
            return self.error("invalid_event", "audio_end_ms must be a finite number", event_type=event_type)
        if not self.replies.keep_heard(response_id, audio_end_ms):
            return self.error("invalid_event", f"no reply {response_id!r} to truncate", event_type=event_type)

    def error(self, code: str, message: str, recoverable: bool = True, event_type: str | None = None) -> None:
        self.metrics.errors.labels(code).inc()
        log.info("session %s error %s", self.session_id, code)
        data = {"code": code, "message": message, "recoverable": recoverable}
        if event_type:
            data["event_type"] = event_type
        self._emit(EventKind.ERROR, error=data)

    # -- session settings ---------------------------------------------------------------------

    def _start(self, config: Mapping[str, Any] | None) -> None:
        if self.started:
            return self.error("invalid_event", "the session has already started", event_type="session.start")
        self.started = True
        self._apply_config(config or {}, EventKind.SESSION_CREATED)

    def _apply_config(self, data: Mapping[str, Any], kind: EventKind) -> None:
        try:
            new = self.config.updated(data)
        except ProtocolError as exc:
            self.error(exc.code, exc.message, event_type="session.update")
            if kind is EventKind.SESSION_CREATED:
                self._emit(kind, session=self.config.to_wire(), limits=self._limits())
            return
        if new.input_rate_hz != self.config.input_rate_hz:
            self._resampler, self._vad_resampler = input_resamplers(new.input_rate_hz)
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
            barge_in_confirm_ms=vad.barge_in_confirm_ms if self.settings.capabilities.stt else 0.0,
            vad_enabled=config.vad_enabled,
        )

    def _limits(self) -> dict[str, int]:
        server = self.settings.server
        return {
            "max_text_frame_bytes": server.max_text_frame_bytes,
            "max_audio_frame_bytes": self.max_audio_frame_bytes,
            "max_sessions": server.max_sessions,
            "audio_in_queue_frames": server.audio_in_queue_frames,
        }

    # -- input --------------------------------------------------------------------------------

    async def _input_loop(self) -> None:
        while True:
            idle_s = None if self._turn is None else self._turns.endpoint_silence_ms / 1000.0
            frame = await self._audio_in.get(idle_s)
            if frame is None and self._resampler.held_ms > 0:  # the input paused: release the resampler's tail
                frame = InputFrame(np.zeros(0, np.float32), self._last_frame[0], final=True)
            if frame is None:
                self._last_frame = (now(), self._history_audio.end_ms)
                await self._apply_actions(self._turns.input_idle(self._history_audio.end_ms))
                continue
            self._history_audio.append(self._resampler.process(frame.samples, final=frame.final))
            self._last_frame = (frame.t, self._history_audio.end_ms + self._resampler.held_ms)
            vad_samples = self._vad_resampler.process(frame.samples, final=frame.final)
            probabilities = await self._vad.process(vad_samples)
            if self._echo is not None:
                self._echo.heard(vad_samples)
            for probability in probabilities:
                self._vad_pos_ms += VAD_FRAME_MS
                if self._echo is not None and probability >= self._turns.config.neg_threshold:
                    probability = self._echo.gated(probability, self._vad_pos_ms, self._stream_time(self._vad_pos_ms))
                await self._apply_actions(self._turns.on_vad(self._vad_pos_ms, VAD_FRAME_MS, probability))
            if self._turn is not None and self._turn.stt is not None:
                self._turn.stt.maybe_partial(self._history_audio.end_ms)

    def _stream_time(self, position_ms: float) -> float:
        """The monotonic time at which the sample at `position_ms` reached the server."""
        arrival_t, end_ms = self._last_frame
        return arrival_t - max(0.0, end_ms - position_ms) / 1000.0

    async def _apply_actions(self, actions: Iterable[Action]) -> None:
        for action in actions:
            match action:
                case SpeechStarted(start_ms):
                    self._turn = self._new_turn(start_ms)
                    self._emit(EventKind.SPEECH_STARTED, turn_id=self._turn.turn_id, audio_start_ms=round(start_ms))
                case SilenceStarted(speech_end_ms):
                    if self._turn and self._pause_eot:  # the audio model first: it decides the endpoint
                        self._pause_eot.pause_started(self._history_audio.slice_ms(self._turn.start_ms - self.settings.vad.prefix_padding_ms))
                    if self._turn and self.settings.stt.early_final and self.settings.capabilities.stt:
                        self._turn.stt.pause_started(speech_end_ms, self._history_audio.end_ms)
                        self._text_eot.pause_started(self._turn, speech_end_ms, self._history_audio.end_ms)
                        self.replies.speculate(self._turn, self._turn.stt.final(speech_end_ms, self._history_audio.end_ms))
                    if self._turn and self._barge_in.pending is self._turn:  # the words over the reply decide
                        self._barge_in.pause_started(self._turn, speech_end_ms, self._history_audio.end_ms)
                case SpeechResumed():
                    if self._turn:
                        self.replies.discard(self._turn)
                        self._turn.stt.speech_resumed()
                case EndOfTurn():
                    self._barge_in.end_of_turn()
                    self._end_turn(action)
                case BargeInHeld():
                    self._barge_in.held(self._turn)
                case BargeIn():
                    self._barge_in.interrupt()

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
        if turn.eot is not None:
            turn.eot.cancel()
            if turn.eot.latest is not None:
                turn.timeline.report.eot_probability = round(turn.eot.latest, 3)
        self.metrics.observe_end_of_turn(turn.timeline.report.set_end_of_turn(verdict_at_end(self._pause_eot, turn.eot)))
        self._emit(EventKind.SPEECH_STOPPED, turn_id=turn.turn_id, audio_end_ms=round(end.speech_end_ms))
        self._emit(EventKind.INPUT_COMMITTED, turn_id=turn.turn_id)
        if self.replies.commit(turn):  # its reply was prepared during the pause
            return
        if not self.settings.capabilities.stt:  # an off-state: say so, from cached audio
            return self.replies.start_fixed(turn, STT_OFF)
        self.replies.start_voice(turn, turn.stt.final(end.speech_end_ms, self._history_audio.end_ms))

    def _new_turn(self, start_ms: float) -> VoiceTurn:
        turn_id = f"t{next(self._turn_ids)}"

        def on_partial(text: str) -> None:
            if self._turn is turn:
                self._emit(EventKind.TRANSCRIPT_PARTIAL, turn_id=turn_id, transcript=text)

        stt = TurnTranscriber(
            self.engines.stt,
            self._history_audio.slice_ms,
            start_ms - self.settings.vad.prefix_padding_ms,
            self._spawn,
            self.settings.stt.partial_interval_ms,
            on_partial if self.config.partials and self.settings.capabilities.stt else None,
            self._may_start_partial, self.metrics.shed.labels("partial").inc,  # shed or superseded partials
        )
        turn = VoiceTurn(turn_id, start_ms, stt=stt)
        self._text_eot.attach(turn)
        return turn

    def _may_start_partial(self) -> bool:
        """Overload sheds partials first (session/load.py): finals never wait behind them."""
        if self.engines.load is not None and self.engines.load.sheds_partials():
            self.metrics.shed.labels("partial").inc()
            return False
        return True

    def _forget_turn(self, turn: VoiceTurn) -> None:
        """The words over the reply were a backchannel: no turn, no reply (the reply goes on)."""
        self._drop_turn()
        self._emit(EventKind.SPEECH_STOPPED, turn_id=turn.turn_id, audio_end_ms=round(self._vad_pos_ms),
                   ignored="backchannel")

    def _drop_turn(self) -> None:
        if self._turn is not None and self._turn.eot is not None:
            self._turn.eot.cancel()
        if self._turn is not None:
            self.replies.discard(self._turn)
            self._turn.stt.cancel()
        self._turn = None
        self._barge_in.release()

    async def _text_turn(self, text: str) -> None:
        if self._turn is not None:
            self.replies.discard(self._turn)
        self.replies.interrupt("new_input")
        turn = UserTurn(f"t{next(self._turn_ids)}", self._history_audio.end_ms, TurnTimeline(origin="input_end"))
        turn.timeline.mark("input_end", now())
        self.replies.start_text(turn, text)

    def say(self, text: str, reason: str = "timer") -> None:
        """Speak `text` as a reply of the assistant's own (a timer going off), after any reply in progress."""
        turn = UserTurn(f"t{next(self._turn_ids)}", self._history_audio.end_ms, TurnTimeline(origin="input_end"))
        turn.timeline.mark("input_end", now())
        self.replies.start_said(turn, text, reason)

    def _tool_continuation(self) -> None:
        """`response.create` after tool outputs: the reply goes on once the one that called has finished."""
        turn = UserTurn(f"t{next(self._turn_ids)}", self._history_audio.end_ms, TurnTimeline(origin="input_end"))
        turn.timeline.mark("input_end", now())
        if not self.replies.start_tool_continuation(turn):
            self.error("invalid_event", "response.create continues a reply after the outputs of all its tool calls; "
                       "every user turn is answered without it", event_type="response.create")

    # -- plumbing -----------------------------------------------------------------------------

    def _emit(self, kind: EventKind, turn_id: str | None = None, response_id: str | None = None, **data: Any) -> None:
        """Send a session event (a reply's own events go through its ReplyHandle, which may hold them)."""
        self.outbox.emit(ServerEvent(kind, self.session_id, turn_id=turn_id, response_id=response_id, data=data))

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A session task ended: a failure nobody awaited is counted and logged, never left unretrieved."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, (EngineError, ProtocolError)):
            return  # expected failures: whoever awaits the task (or its done callback) reports them
        self.metrics.errors.labels("internal_error").inc()
        log.error("session %s: task %s failed with %s", self.session_id, task.get_name(), type(exc).__name__,
                  exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)

