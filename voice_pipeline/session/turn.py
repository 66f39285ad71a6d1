"""Turn-taking as a pure state machine: VAD frames and the audio clock in, actions out.

No I/O and no wall clock: time is the position in the input audio stream, in milliseconds, so a
test can drive it frame by frame. The session turns the actions into work (STT, replies) and
into protocol events.

User side:  QUIET -> SPEAKING -> PAUSED -> (SPEAKING | end of turn -> QUIET)
- SPEAKING starts after `min_speech_ms` of speech (SpeechStarted).
- PAUSED starts after `pause_ms` of silence (SilenceStarted: a provisional end, where speculative
  work may begin); speech before the endpoint resumes the turn (SpeechResumed).
- The turn ends after `endpoint_silence_ms` of silence (EndOfTurn), or when the client commits
  the input, or when the input stream goes idle.
  An end-of-turn model may move that silence for one pause: `hint_end_of_turn` (a probability,
  mapped linearly) or `hint_endpoint_silence` (a wait in ms, for the pause it was computed on).
Assistant side: while a response is active, `barge_in_min_speech_ms` of user speech emits BargeIn,
or, with `barge_in_confirm_ms` > 0, BargeInHeld: the reply is paused while the words are judged
(`barge_in_resolved`: a backchannel forgets the user's turn, anything else is the barge-in), the
endpoint waits for the verdict (up to the longest wait), and `barge_in_confirm_ms` of speech over
the reply is a barge-in without a verdict.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class UserState(enum.Enum):
    QUIET = "quiet"
    SPEAKING = "speaking"
    PAUSED = "paused"


@dataclass(frozen=True)
class TurnConfig:
    threshold: float = 0.5
    min_speech_ms: float = 64.0
    pause_ms: float = 96.0
    endpoint_silence_ms: float = 300.0
    barge_in_min_speech_ms: float = 96.0
    barge_in_confirm_ms: float = 0.0  # 0: interrupt at once; else pause, and interrupt after this much speech
    vad_enabled: bool = True
    # Bounds for an end-of-turn hint (semantic end-of-turn): the silence needed to end the turn
    # moves between these, from `endpoint_silence_ms` at probability 0.5.
    min_endpoint_silence_ms: float = 150.0
    max_endpoint_silence_ms: float = 1200.0

    @property
    def neg_threshold(self) -> float:
        return max(0.0, self.threshold - 0.15)


@dataclass(frozen=True)
class SpeechStarted:
    start_ms: float


@dataclass(frozen=True)
class SilenceStarted:
    speech_end_ms: float


@dataclass(frozen=True)
class SpeechResumed:
    at_ms: float


@dataclass(frozen=True)
class EndOfTurn:
    speech_end_ms: float
    decided_ms: float
    reason: str  # "silence" | "commit" | "idle"


@dataclass(frozen=True)
class BargeIn:
    at_ms: float


@dataclass(frozen=True)
class BargeInHeld:
    """Speech over the reply: pause it until the words are judged (`barge_in_resolved`)."""

    at_ms: float


Action = SpeechStarted | SilenceStarted | SpeechResumed | EndOfTurn | BargeIn | BargeInHeld


class TurnTaking:
    def __init__(self, config: TurnConfig) -> None:
        self.config = config
        self.state = UserState.QUIET
        self.response_active = False
        self._speech_run_ms = 0.0  # consecutive speech, while QUIET or during a response
        self._speech_start_ms = 0.0
        self._speech_end_ms = 0.0  # end of the last speech frame of the current turn
        self._barged_in = False
        self._held = False  # BargeInHeld was emitted and its verdict has not come
        self._held_speech_ms = 0.0  # speech over the reply since then
        self._eot_probability: float | None = None
        self._awaiting_hint = False  # a hint is on its way: wait for it (up to the longest wait)
        self._hint_silence_ms: float | None = None  # an end-of-turn model's wait for this pause
        self.pauses = 0  # pauses so far: a hint computed for one pause must not land on the next

    # -- inputs -------------------------------------------------------------------------------

    def on_vad(self, frame_end_ms: float, frame_ms: float, probability: float) -> list[Action]:
        """One VAD frame ending at `frame_end_ms` in the input stream."""
        if not self.config.vad_enabled:
            return []
        if probability >= self.config.threshold:
            return self._on_speech(frame_end_ms, frame_ms)
        if probability < self.config.neg_threshold:
            return self._on_silence(frame_end_ms, frame_ms)
        return self._on_uncertain(frame_end_ms, frame_ms)

    def commit(self, now_ms: float) -> list[Action]:
        """The client ended the turn (push-to-talk or VAD off)."""
        end_ms = self._speech_end_ms if self.state is not UserState.QUIET else now_ms
        self._reset_user()
        return [EndOfTurn(end_ms, now_ms, "commit")]

    def input_idle(self, now_ms: float) -> list[Action]:
        """No audio arrives any more: treat the missing audio as silence and end a pending turn."""
        if self.state is UserState.QUIET:
            return []
        end_ms = self._speech_end_ms
        self._reset_user()
        return [EndOfTurn(end_ms, now_ms, "idle")]

    def clear(self) -> None:
        """The client dropped its input buffer: forget the turn in progress."""
        self._reset_user()

    def response_started(self) -> None:
        self.response_active = True
        self._barged_in = self._held = False
        self._speech_run_ms = 0.0

    def response_finished(self) -> None:
        self.response_active = False
        self._barged_in = self._held = False

    @property
    def barge_in_held(self) -> bool:
        return self._held

    def barge_in_resolved(self, interrupt: bool) -> bool:
        """The words spoken over the reply were judged: `interrupt` makes them the barge-in (the
        turn goes on); otherwise (a backchannel, nothing intelligible) the user's turn is forgotten.
        Returns False when nothing was held any more (the turn or the reply ended meanwhile)."""
        if not self._held:
            return False
        self._held = False
        if interrupt:
            self._barged_in = True
        else:
            self._reset_user()
        return True

    def hint_end_of_turn(self, probability: float | None) -> None:
        """A semantic end-of-turn probability for the words so far (None clears it)."""
        self._eot_probability = probability
        self._awaiting_hint = False

    def hint_endpoint_silence(self, silence_ms: float | None, pause: int | None = None) -> bool:
        """An end-of-turn model's wait for the pause numbered `pause` (None: the plain silence rule).

        Applied only while the user is still in that pause; returns whether it was applied."""
        if self.state is not UserState.PAUSED or (pause is not None and pause != self.pauses):
            return False
        self._hint_silence_ms = silence_ms
        self._awaiting_hint = False
        return True

    def expect_hint(self) -> None:
        """A hint for this pause is being computed: until it comes, wait up to the longest wait."""
        if self.state is UserState.PAUSED:
            self._awaiting_hint = True

    # -- derived ------------------------------------------------------------------------------

    @property
    def endpoint_silence_ms(self) -> float:
        cfg, p = self.config, self._eot_probability
        if self._awaiting_hint or self._held:
            return cfg.max_endpoint_silence_ms
        if self._hint_silence_ms is not None:
            return self._hint_silence_ms
        if p is None:
            return cfg.endpoint_silence_ms
        if p >= 0.5:
            span = cfg.endpoint_silence_ms - cfg.min_endpoint_silence_ms
            return cfg.endpoint_silence_ms - span * (p - 0.5) * 2
        span = cfg.max_endpoint_silence_ms - cfg.endpoint_silence_ms
        return cfg.endpoint_silence_ms + span * (0.5 - p) * 2

    # -- transitions --------------------------------------------------------------------------

    def _on_speech(self, end_ms: float, frame_ms: float) -> list[Action]:
        actions: list[Action] = []
        if self.state is UserState.QUIET:
            if self._speech_run_ms == 0.0:
                self._speech_start_ms = end_ms - frame_ms
            self._speech_run_ms += frame_ms
            if self._speech_run_ms >= self.config.min_speech_ms:
                self.state = UserState.SPEAKING
                actions.append(SpeechStarted(self._speech_start_ms))
        elif self.state is UserState.PAUSED:
            self.state = UserState.SPEAKING
            self._eot_probability = None
            self._hint_silence_ms = None
            self._awaiting_hint = False
            actions.append(SpeechResumed(end_ms - frame_ms))
        else:
            self._speech_run_ms += frame_ms
        if self.state is UserState.SPEAKING:
            self._speech_end_ms = end_ms
        actions.extend(self._check_barge_in(end_ms, frame_ms))
        return actions

    def _check_barge_in(self, end_ms: float, frame_ms: float) -> list[Action]:
        if not self.response_active or self._barged_in or self.state is UserState.QUIET:
            return []
        confirm_ms = self.config.barge_in_confirm_ms
        if self._held:
            self._held_speech_ms += frame_ms
            if self._held_speech_ms < confirm_ms:
                return []
            self._held = False  # too long for a backchannel: a barge-in without waiting for the words
        elif self._speech_run_ms < self.config.barge_in_min_speech_ms:
            return []
        elif confirm_ms > 0:
            self._held, self._held_speech_ms = True, self._speech_run_ms
            return [BargeInHeld(end_ms)]
        self._barged_in = True
        return [BargeIn(end_ms)]

    def _on_silence(self, end_ms: float, frame_ms: float) -> list[Action]:
        if self.state is UserState.QUIET:
            self._speech_run_ms = 0.0
            return []
        silence_ms = end_ms - self._speech_end_ms
        if self.state is UserState.SPEAKING:
            self._speech_run_ms = 0.0
            if silence_ms >= self.config.pause_ms:
                self.state = UserState.PAUSED
                self.pauses += 1
                return [SilenceStarted(self._speech_end_ms), *self._check_endpoint(end_ms, silence_ms)]
            return []
        return self._check_endpoint(end_ms, silence_ms)

    def _on_uncertain(self, end_ms: float, frame_ms: float) -> list[Action]:
        # Between the two thresholds the current state holds; a pause keeps counting silence.
        if self.state is UserState.PAUSED:
            return self._check_endpoint(end_ms, end_ms - self._speech_end_ms)
        if self.state is UserState.SPEAKING:
            self._speech_end_ms = end_ms
        return []

    def _check_endpoint(self, end_ms: float, silence_ms: float) -> list[Action]:
        if silence_ms < self.endpoint_silence_ms:
            return []
        speech_end_ms = self._speech_end_ms
        self._reset_user()
        return [EndOfTurn(speech_end_ms, end_ms, "silence")]

    def _reset_user(self) -> None:
        self.state = UserState.QUIET
        self._held = False
        self._speech_run_ms = 0.0
        self._eot_probability = None
        self._hint_silence_ms = None
        self._awaiting_hint = False
