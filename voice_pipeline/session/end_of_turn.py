"""End of turn: the scorers' protocols, the text signal's pure parts, and the pause's audio verdict.

Two signals can move the endpoint of `TurnTaking` (session/turn.py); silence alone is the rule
when neither is configured or when one fails:
- **audio** (`AudioTurnScorer`, e.g. engines/smart_turn.py): at each pause, P(the turn is complete)
  from the pause's own audio (intonation, the last words' shape). `PauseAudioScorer` runs it off
  the event loop and turns the score into a wait by `AudioPolicy`: sure -> end the turn early,
  unsure -> the plain silence rule, incomplete -> wait through a long pause.
- **text** (`TextTurnScorer`, e.g. engines/text_eot.py): P(the words so far end the turn), from the
  small LLM's next-token distribution (`<|im_start|>user\\n{text}`, the mass on `<|im_end|>`, `.`,
  `?`, `!`), calibrated by a logistic fit (models/eot/calibration.json). `LatestTextScorer` keeps
  one turn's scoring to the newest text. The session hands the probability to
  `TurnTaking.hint_end_of_turn`.
No native loading here: the engines live in `engines/` and reach the session as `Engines.eot`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from voice_pipeline.engines.registry import MODELS_DIR
from voice_pipeline.session.turn import TurnTaking

if TYPE_CHECKING:
    from voice_pipeline.app.settings import VadSettings

log = logging.getLogger("voice_pipeline.session.end_of_turn")

DATA_VERSION = "v1"
EOT_DIR = MODELS_DIR / "eot"
CALIBRATION_PATH = EOT_DIR / "calibration.json"
PROMPT_PREFIX = "<|im_start|>user\n"
NEUTRAL_PROBABILITY = 0.5  # no words yet: the default endpoint silence
SIGNALS = ("audio", "text", "silence")


# -- protocols ------------------------------------------------------------------------------------


@runtime_checkable
class TextTurnScorer(Protocol):
    """`await probability(text)`: the calibrated probability that `text` is a whole user turn."""

    async def probability(self, text: str) -> float: ...


@runtime_checkable
class AudioTurnScorer(Protocol):
    """`await complete_probability(audio_16k)`: P(the turn is complete) from audio ending now.
    Runs its model off the event loop; a failure raises (the caller falls back to silence)."""

    name: str

    async def complete_probability(self, audio_16k: np.ndarray) -> float: ...


EndOfTurnModel = TextTurnScorer | AudioTurnScorer


def signal_of(model: object | None) -> str:
    """Which signal an `Engines.eot` gives: "audio", "text", or "silence" (none)."""
    if isinstance(model, AudioTurnScorer):
        return "audio"
    return "text" if model is not None else "silence"


# -- the audio signal -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioPolicy:
    """From calibrated scores to the pause's wait (settings.vad.eot_*; docs/turn-taking.md).

    Audio alone: at or above `sure` the turn is complete and ends after `sure_silence_ms`; below
    `unsure` it is not, and only `wait_silence_ms` of silence ends it (longer than people pause
    mid-sentence); between the two the plain silence rule decides. With the text signal too
    (`audio+text`): complete only when the audio is at least `unsure` and the words score at
    least `text_sure`, and then the turn ends after `agree_silence_ms` (longer than the plain rule:
    both models were fooled by the 300-500 ms gaps between the parts of a list or a phone number
    often enough to matter, docs/turn-taking.md); otherwise the long wait."""

    sure: float = 0.5  # the defaults are settings.vad's, calibrated on the pause corpus
    unsure: float = 0.1
    text_sure: float = 0.8
    sure_silence_ms: float = 160.0
    agree_silence_ms: float = 400.0  # audio+text: both call it complete (guards list and digit gaps)
    wait_silence_ms: float = 1800.0
    budget_ms: float = 500.0  # a score later than this is not waited for: the silence rule decides

    @classmethod
    def from_settings(cls, vad: VadSettings) -> AudioPolicy:
        return cls(sure=vad.eot_sure, unsure=vad.eot_unsure, text_sure=vad.eot_text_sure,
                   sure_silence_ms=vad.eot_sure_silence_ms, wait_silence_ms=vad.eot_wait_silence_ms,
                   budget_ms=vad.eot_budget_ms, agree_silence_ms=vad.eot_agree_silence_ms)

    def decide(self, audio: float) -> tuple[str, float | None]:
        """(decision, wait in ms of silence, or None for the plain silence rule) from audio alone."""
        if audio >= self.sure:
            return "complete", self.sure_silence_ms
        if audio < self.unsure:
            return "incomplete", self.wait_silence_ms
        return "unsure", None

    def decide_both(self, audio: float, text: float) -> tuple[str, float | None]:
        if audio >= self.unsure and text >= self.text_sure:
            return "complete", self.agree_silence_ms
        return "incomplete", self.wait_silence_ms


@dataclass(frozen=True)
class Verdict:
    """What the end-of-turn signal said at a turn's last pause; goes into `turn.metrics`."""

    signal: str  # audio | audio+text | text | silence
    decision: str  # complete | unsure | incomplete | failed | late | none
    score: float | None = None  # the audio score (the text score for `text`)
    model_ms: float | None = None
    pause: int = 0
    text_score: float | None = None

    def to_wire(self) -> dict[str, str | float]:
        """The `turn.metrics` fields: eot_signal, eot_decision, and the scores that exist."""
        wire: dict[str, str | float] = {"eot_signal": self.signal, "eot_decision": self.decision}
        for name, value in (("eot_score", self.score), ("eot_text_score", self.text_score),
                            ("eot_model_ms", self.model_ms)):
            if value is not None:
                wire[name] = value
        return wire


_PENDING = object()


def judge(policy: AudioPolicy, audio: float | None, audio_outcome: str, text: float | None,
          text_pending: bool, use_text: bool) -> tuple[str, float | None] | None:
    """The pause's (decision, wait ms or None for the silence rule) once the audio score is in;
    None while the text score is still needed. `audio` None: the model failed (`audio_outcome`)."""
    if audio is None:
        return audio_outcome or "failed", None
    decision, wait_ms = policy.decide(audio)
    if not use_text or decision == "incomplete":
        return decision, wait_ms
    if text_pending:
        return None
    return (decision, wait_ms) if text is None else policy.decide_both(audio, text)


class PauseAudioScorer:
    """One session's audio end-of-turn: at each pause, score the turn's audio so far (and, with
    `use_text`, wait for the pause's text score too) and set the endpoint of `turns` for that pause
    only. The verdict of the pause is kept for the turn's report."""

    @classmethod
    def for_session(cls, model: object | None, turns: TurnTaking, vad: VadSettings) -> PauseAudioScorer | None:
        """The session's pause scorer when `Engines.eot` has an audio model, else None."""
        if not isinstance(model, AudioTurnScorer):
            return None
        return cls(model, turns, AudioPolicy.from_settings(vad), use_text=isinstance(model, TextTurnScorer))

    def __init__(self, model: AudioTurnScorer, turns: TurnTaking, policy: AudioPolicy, use_text: bool = False) -> None:
        self.model, self.turns, self.policy, self.use_text = model, turns, policy, use_text
        self.signal = "audio+text" if use_text else "audio"
        self.verdict: Verdict | None = None
        self._task: asyncio.Task[None] | None = None
        self._pause = -1
        self._audio: object = _PENDING  # float, None (failed or late) or pending
        self._text: object = _PENDING
        self._audio_ms: float | None = None
        self._audio_outcome = ""

    def pause_started(self, audio_16k: np.ndarray) -> None:
        """The user has just gone quiet (SilenceStarted): hold the endpoint until the scores come."""
        self.cancel()
        self._pause = self.turns.pauses
        self.verdict, self._audio, self._text, self._audio_ms = None, _PENDING, _PENDING, None
        self.turns.expect_hint()
        self._task = asyncio.get_running_loop().create_task(self._score(audio_16k, self._pause))

    def text_scored(self, probability: float | None) -> None:
        """The pause's words were scored (None: no words, or the scorer failed)."""
        if self._pause == self.turns.pauses and self._text is _PENDING:
            self._text = probability
            self._decide()

    async def _score(self, audio_16k: np.ndarray, pause: int) -> None:
        start = time.perf_counter()
        p: float | None = None
        try:
            async with asyncio.timeout(self.policy.budget_ms / 1000.0):
                p = await self.model.complete_probability(audio_16k)
            if not math.isfinite(p):
                raise ValueError("the end-of-turn model returned a non-finite score")
            outcome = ""
        except TimeoutError:
            p, outcome = None, "late"
        except Exception:  # a failing model must not hold the turn: the silence rule decides
            log.warning("audio end-of-turn scoring failed", exc_info=True)
            p, outcome = None, "failed"
        if pause == self._pause:
            self._audio, self._audio_outcome = p, outcome
            self._audio_ms = round(1000 * (time.perf_counter() - start), 1)
            self._decide()

    def _decide(self) -> None:
        if self._audio is _PENDING:
            return
        audio = self._audio if isinstance(self._audio, float) else None
        text = self._text if isinstance(self._text, float) else None
        ruling = judge(self.policy, audio, self._audio_outcome, text, self._text is _PENDING, self.use_text)
        if ruling is None:
            return  # hold on: the words decide the rest
        decision, wait_ms = ruling
        verdict = Verdict(self.signal, decision, None if audio is None else round(audio, 3), self._audio_ms,
                          self._pause, None if text is None else round(text, 3))
        if self.turns.hint_endpoint_silence(wait_ms, self._pause):
            self.verdict = verdict

    def turn_ended(self) -> Verdict:
        """The turn's verdict (from its last pause, if that pause ended it) and a fresh start."""
        verdict = self.verdict
        self.cancel()
        self.verdict = None
        if verdict is None or verdict.pause != self.turns.pauses:
            return Verdict(self.signal, "none", pause=self.turns.pauses)
        return verdict

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the worker thread finishes on its own; it holds nothing shared
        self._task = None


def verdict_at_end(pause: PauseAudioScorer | None, text: LatestTextScorer | None) -> Verdict:
    """The end-of-turn verdict of a turn that has just ended, whichever signal is configured."""
    if pause is not None:
        return pause.turn_ended()
    if text is not None:
        p = text.latest
        if p is None:
            return Verdict("text", "none")
        return Verdict("text", "complete" if p >= 0.5 else "incomplete", round(p, 3))
    return Verdict("silence", "silence")


# -- the text signal ------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """ASR text as the calibration saw it: lowercase, no punctuation but apostrophes, single spaces."""
    import re

    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Calibration:
    """p = 1 / (1 + exp(-(weight * log_prob + bias))), log_prob = log P(end token | text so far)."""

    weight: float
    bias: float
    data_version: str = DATA_VERSION

    def probability(self, log_prob: float) -> float:
        z = self.weight * log_prob + self.bias
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    @classmethod
    def load(cls, path: Path = CALIBRATION_PATH) -> Calibration:
        data = json.loads(Path(path).read_text())
        return cls(weight=data["weight"], bias=data["bias"], data_version=data["data_version"])

    def save(self, path: Path = CALIBRATION_PATH, **extra: object) -> None:
        Path(path).write_text(json.dumps({**asdict(self), **extra}, indent=2) + "\n")


class EndLogProb(Protocol):
    """Synchronous, one thread at a time: log P(an end token next | text)."""

    def end_log_prob(self, text: str) -> float: ...


class LatestTextScorer:
    """One turn's end-of-turn scoring: the newest text wins, texts never queue up.

    `submit(text)` on each partial (and on the pause's early-final transcript). While a score runs,
    newer texts replace each other; when it finishes, the newest is scored next. Each result goes to
    `on_probability(text, p)` and is kept in `latest`. `cancel()` when the turn ends or is dropped.
    """

    def __init__(self, scorer: TextTurnScorer, on_probability: Callable[[str, float | None], None]) -> None:
        self._scorer, self._on_probability = scorer, on_probability
        self._pending: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.latest: float | None = None

    def submit(self, text: str) -> None:
        self._pending = text
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending is not None:
            text, self._pending = self._pending, None
            try:
                self.latest = await self._scorer.probability(text)
            except Exception:  # a failing scorer must not hold the turn: say "no hint"
                log.warning("end-of-turn scoring failed", exc_info=True)
                self._on_probability(text, None)
                continue
            self._on_probability(text, self.latest)

    def cancel(self) -> None:
        self._pending = None
        if self._task is not None:
            self._task.cancel()
