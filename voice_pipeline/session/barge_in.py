"""Speech over a reply: pause the reply's audio, judge the words, then resume it or interrupt it.

The turn machine says when speech over a reply starts (`BargeInHeld`) and when it is too long to
be a backchannel (`BargeIn`); this judge owns the pause in between. At the speaker's first pause
the pause's transcript decides: a backchannel ("mhm", "yeah", "okay", "right", "uh-huh") or no
words at all resumes the reply where it stopped and forgets the user's turn; anything else
("stop", "wait, no, I meant Paris") interrupts it, and the turn goes on to be answered. A turn
that ends before its words are judged (a commit, the input going idle, the longest endpoint
wait) is a barge-in too. In the spirit of LiveKit's false-interruption resume
(`voice/agent_activity.py`), with the words instead of a timer deciding.

It is also the replies' `Floor`: when a reply ends or a new one takes the floor, a pause still
held is released, so the outbox is never left paused.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from voice_pipeline.engines.base import Transcript
from voice_pipeline.metrics import PipelineMetrics
from voice_pipeline.session.outbox import Outbox
from voice_pipeline.session.turn import TurnTaking, UserState
from voice_pipeline.session.user_turn import VoiceTurn

log = logging.getLogger("voice_pipeline.session.barge_in")

# Words that only say "go on" (said alone, or two or three of them: "oh, okay", "yeah, right").
BACKCHANNEL_WORDS = frozenset({
    "yeah", "yes", "yep", "yup", "okay", "ok", "right", "alright", "sure", "cool", "nice", "great", "good",
    "wow", "really", "oh", "ah", "aha", "uh", "um", "huh", "uh-huh", "mhm", "mm-hmm", "hmm",
})
BACKCHANNEL_PHRASES = frozenset({"i see", "got it", "all right", "uh huh", "mm hmm", "i know", "of course"})
# Hums as whisper spells them: "Mhm", "M.H.N.", "Mmmm", "Hmm", "mm-hmm" (not "uh-uh": that is a no).
_HUM = re.compile(r"^(?:[mhn]{1,6}|m+-?h+m+|u+h+|a+h+|o+h+)$")
_NOT_WORD = re.compile(r"[^a-z' -]+")


def is_backchannel(text: str) -> bool:
    """Whether an utterance over the assistant only acknowledges it (or holds no words at all).

    Whisper often repeats a short word ("Yeah. Yeah."), so repeats count once."""
    tokens: list[str] = []
    for token in _NOT_WORD.sub(" ", text.lower().replace(".", "")).split():
        token = token.strip("-'")
        if token and (not tokens or tokens[-1] != token):
            tokens.append(token)
    if " ".join(tokens) in BACKCHANNEL_PHRASES:
        return True
    return len(tokens) <= 3 and all(t in BACKCHANNEL_WORDS or _HUM.match(t.replace("-", "")) for t in tokens)


class BargeInJudge:
    def __init__(self, turns: TurnTaking, outbox: Outbox, metrics: PipelineMetrics, *,
                 interrupt: Callable[[], None], forget: Callable[[VoiceTurn], None]) -> None:
        self._turns, self._outbox, self._metrics = turns, outbox, metrics
        self._interrupt, self._forget = interrupt, forget
        self.pending: VoiceTurn | None = None  # the turn whose speech paused the reply

    # -- the turn machine's actions -----------------------------------------------------------

    def held(self, turn: VoiceTurn | None) -> None:
        """BargeInHeld: stop the reply's audio while the words are judged."""
        if turn is None:  # cannot happen: the machine holds only during a user turn
            return
        self.pending = turn
        self._outbox.pause(turn.turn_id)  # the client hears of it at once: output_audio_buffer.paused

    def pause_started(self, turn: VoiceTurn, speech_end_ms: float, now_ms: float) -> None:
        """The speaker paused: judge the words so far when their transcript (the early final) is in."""
        if self.pending is not turn:
            return
        pause = self._turns.pauses
        turn.stt.final(speech_end_ms, now_ms).add_done_callback(lambda task: self._judge(turn, pause, task))

    def interrupt(self, outcome: str = "long_speech") -> None:
        """A barge-in (the machine's BargeIn, or the verdict): stop the reply, then let audio flow."""
        if self.pending is not None:
            self._metrics.barge_ins.labels(outcome).inc()
        self.pending = None
        self._interrupt()  # flushes the reply's queued audio first ...
        self._outbox.resume()  # ... so nothing of it is sent after

    def end_of_turn(self) -> None:
        """The turn ended before its words were judged: a barge-in."""
        if self.pending is not None:
            self.interrupt("turn_ended")

    def release(self) -> None:
        """Nothing to judge any more (the turn was dropped, the reply ended): let audio flow."""
        self.pending = None
        self._outbox.resume()

    def _judge(self, turn: VoiceTurn, pause: int, task: asyncio.Task[Transcript]) -> None:
        if self.pending is not turn or self._turns.pauses != pause or self._turns.state is not UserState.PAUSED:
            log.debug("barge-in verdict for pause %d dropped (pending=%s, pauses=%d, state=%s)", pause,
                      self.pending is turn, self._turns.pauses, self._turns.state.value)
            return  # the user went on (a longer utterance is judged at its next pause) or it was settled
        text = "" if task.cancelled() or task.exception() is not None else task.result().text
        if not is_backchannel(text):
            self._turns.barge_in_resolved(interrupt=True)
            return self.interrupt("words")
        self._turns.barge_in_resolved(interrupt=False)
        self._metrics.barge_ins.labels("backchannel" if text.strip() else "no_words").inc()
        self.pending = None
        self._forget(turn)
        self._outbox.resume()

    # -- Floor (reply/replies.py): the replies tell turn-taking who holds the floor -----------

    def response_started(self) -> None:
        self._turns.response_started()
        if self.pending is not None:  # a new reply replaces the paused one (a text turn, a timer)
            self.release()

    def response_finished(self) -> None:
        self._turns.response_finished()
        self.release()
