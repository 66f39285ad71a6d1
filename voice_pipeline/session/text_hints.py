"""The text end-of-turn signal at a pause: score the pause's own transcript, then move the endpoint.

With the text signal alone the probability goes to `TurnTaking.hint_end_of_turn`; with audio+text
it goes to the pause's audio judge (`PauseAudioScorer.text_scored`), which decides. Either way
only while the turn it was computed for is still the session's current turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voice_pipeline.engines.base import Transcript
from voice_pipeline.session.end_of_turn import LatestTextScorer, PauseAudioScorer, TextTurnScorer
from voice_pipeline.session.turn import TurnTaking, UserState
from voice_pipeline.session.user_turn import VoiceTurn


class TextHints:
    def __init__(self, model: object | None, turns: TurnTaking, pause_eot: PauseAudioScorer | None,
                 current: Callable[[], VoiceTurn | None]) -> None:
        self._model = model if isinstance(model, TextTurnScorer) else None
        self._turns, self._pause_eot, self._current = turns, pause_eot, current

    def attach(self, turn: VoiceTurn) -> None:
        """A new turn gets its own scorer (the newest text wins), if the text signal is on."""
        if self._model is not None:
            turn.eot = LatestTextScorer(self._model, lambda _text, p: self._hint(turn, p))

    def pause_started(self, turn: VoiceTurn, speech_end_ms: float, now_ms: float) -> None:
        """At a pause, score the pause's own transcript and hold the endpoint until it is scored.

        Partials are usually a second behind the speech, so their scores are not applied here;
        the wait for the fresh score costs little: the reply is prepared meanwhile, not after it.
        """
        scorer = turn.eot
        if scorer is None:
            return
        self._turns.expect_hint()

        def score(task: asyncio.Task[Transcript]) -> None:
            if self._current() is not turn:
                return
            if task.cancelled() or task.exception() is not None or not task.result().text.strip():
                self._hint(turn, None)  # nothing to score: plain silence decides
            else:
                scorer.submit(task.result().text)

        turn.stt.final(speech_end_ms, now_ms).add_done_callback(score)

    def _hint(self, turn: VoiceTurn, probability: float | None) -> None:
        """A new end-of-turn probability moves the endpoint, only while the user is pausing."""
        if self._current() is turn and self._pause_eot is not None:  # audio+text: the pause's judge decides
            self._pause_eot.text_scored(probability)
        elif self._current() is turn and self._turns.state is UserState.PAUSED:
            self._turns.hint_end_of_turn(probability)
