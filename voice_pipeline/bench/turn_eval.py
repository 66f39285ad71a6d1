"""End-of-turn evaluation on the pause corpus: the real VAD and turn machine, frame by frame on the
audio clock, with each end-of-turn signal the session can use (silence, text, audio).

For every spoken turn it reports whether the turn was ended before the user's last word (a false
cut-off: the assistant would start answering over the user) and, when it ended after the last
word, how much silence the endpoint waited. Each model runs for real at each pause; its wall time
is put on the audio clock (the hint lands that many ms of stream later), as in the server; or, with
`Signals(clock_ms=...)`, a fixed time per model, so the outcome does not depend on the machine's load
(the CI gate). This is the decision alone; voice-to-voice through a real server is
`voice-pipeline bench --turn-taking`.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from voice_pipeline.bench.pause_corpus import SpokenTurn
from voice_pipeline.session.end_of_turn import AudioPolicy, judge
from voice_pipeline.session.turn import (
    EndOfTurn,
    SilenceStarted,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnTaking,
)

FRAME_MS = 32.0
CHUNK_SAMPLES = 320  # 20 ms, as a client sends
PREFIX_PADDING_MS = 300.0


@dataclass
class Outcome:
    item_id: str
    kind: str
    split: str
    signal: str
    cut_off: bool = False  # a turn ended before the user's last word
    endpoint_ms: float | None = None  # silence waited after the last word (None: the turn never ended)
    pause_scores: list[float] = field(default_factory=list)  # the model's score at each pause
    decisions: list[str] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    text_scores: list[float | None] = field(default_factory=list)
    pauses: list[dict] = field(default_factory=list)  # every VAD pause: where, how long, its scores


class Signals:
    """The models behind the signals, loaded once: `audio` (a SmartTurnModel), `stt` (a WhisperStt) and
    `text` (an engines.text_eot.EndOfTurnScorer). The text signal transcribes the pause's audio, then
    scores the words, as the session does with its early final transcript."""

    def __init__(self, audio=None, stt=None, text=None, policy: AudioPolicy | None = None,
                 clock_ms: dict[str, float] | None = None) -> None:
        self.audio, self.stt, self.text = audio, stt, text
        self.policy = policy or AudioPolicy()
        self.clock_ms = clock_ms or {}  # "audio"/"text": the model's time on the audio clock, instead of its wall time
        self._loop = asyncio.new_event_loop() if stt is not None else None

    def audio_score(self, audio_16k: np.ndarray) -> tuple[float, float]:
        start = time.perf_counter()
        return self.audio.probability(audio_16k), _ms(start)

    def text_score(self, audio_16k: np.ndarray) -> tuple[float | None, float]:
        start = time.perf_counter()
        transcript = self._loop.run_until_complete(self.stt.transcribe(audio_16k, final=True))
        p = self._loop.run_until_complete(self.text.probability(transcript.text)) if transcript.text.strip() else None
        return p, _ms(start)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()


def _ms(start: float) -> float:
    return 1000 * (time.perf_counter() - start)


@dataclass
class _Pause:
    """A pause being judged: when each score lands on the audio clock, and what it is."""

    number: int
    audio_at_ms: float = math.inf
    audio: float | None = None
    text_at_ms: float = math.inf
    text: float | None = None
    done: bool = False


def _at_pause(signal: str, signals: Signals, window: np.ndarray, position_ms: float, number: int,
              outcome: Outcome, speech_end_ms: float) -> _Pause:
    pause = _Pause(number)
    record: dict = {"at_ms": position_ms, "speech_end_ms": speech_end_ms, "resumed_ms": None}
    if "audio" in signal:
        pause.audio, ms = signals.audio_score(window)
        pause.audio_at_ms = position_ms + signals.clock_ms.get("audio", ms)
        outcome.pause_scores.append(round(pause.audio, 3))
        outcome.model_ms.append(round(ms, 1))
        record.update(audio=pause.audio, audio_ms=ms)
    if "text" in signal:
        pause.text, ms = signals.text_score(window)
        pause.text_at_ms = position_ms + signals.clock_ms.get("text", ms)
        outcome.text_scores.append(None if pause.text is None else round(pause.text, 3))
        outcome.model_ms.append(round(ms, 1))
        record.update(text=pause.text, text_ms=ms)
    outcome.pauses.append(record)
    return pause


def _apply(signal: str, pause: _Pause, machine: TurnTaking, policy: AudioPolicy, position_ms: float,
           outcome: Outcome) -> None:
    """Hand the machine whatever the scores that have landed by `position_ms` decide."""
    if pause.done:
        return
    if signal == "text":
        if position_ms >= pause.text_at_ms:
            pause.done = True
            if machine.pauses == pause.number:
                machine.hint_end_of_turn(pause.text)
        return
    if position_ms < pause.audio_at_ms:
        return
    text_pending = position_ms < pause.text_at_ms
    ruling = judge(policy, pause.audio, "", None if text_pending else pause.text, text_pending, signal == "audio+text")
    if ruling is not None:
        pause.done = True
        outcome.decisions.append(ruling[0])
        machine.hint_endpoint_silence(ruling[1], pause.number)


def run_turn(turn: SpokenTurn, signal: str, signals: Signals, vad, config: TurnConfig) -> Outcome:
    """One spoken turn through the VAD and the turn machine with one end-of-turn signal."""
    machine = TurnTaking(config)
    outcome = Outcome(turn.item.item_id, turn.item.kind, turn.item.split, signal)
    last_word_start_ms = turn.speech_ms[-1][0]
    pause: _Pause | None = None
    position_ms, start_ms = 0.0, 0.0
    audio = turn.audio_16k
    for offset in range(0, len(audio), CHUNK_SAMPLES):
        for probability in vad.process(audio[offset : offset + CHUNK_SAMPLES]):
            position_ms += FRAME_MS
            if pause is not None:
                _apply(signal, pause, machine, signals.policy, position_ms, outcome)
            for action in machine.on_vad(position_ms, FRAME_MS, probability):
                if isinstance(action, SpeechStarted):
                    start_ms = action.start_ms
                elif isinstance(action, SilenceStarted) and signal != "silence":
                    window = audio[int(16 * max(0.0, start_ms - PREFIX_PADDING_MS)) : int(16 * position_ms)]
                    machine.expect_hint()
                    pause = _at_pause(signal, signals, window, position_ms, machine.pauses, outcome,
                                      action.speech_end_ms)
                elif isinstance(action, SpeechResumed) and outcome.pauses:
                    outcome.pauses[-1]["resumed_ms"] = action.at_ms
                elif isinstance(action, EndOfTurn):
                    if action.decided_ms < last_word_start_ms + 100.0:
                        outcome.cut_off = True
                    elif outcome.endpoint_ms is None:
                        outcome.endpoint_ms = round(action.decided_ms - turn.speech_end_ms, 1)
                        return outcome
    return outcome


def evaluate(turns: list[SpokenTurn], signal_names: tuple[str, ...], signals: Signals,
             config: TurnConfig | None = None) -> dict:
    from voice_pipeline.engines.vad import SileroVad, load_silero_session

    config = config or TurnConfig()
    session = load_silero_session()
    outcomes = {name: [run_turn(t, name, signals, SileroVad(session), config) for t in turns] for name in signal_names}
    return {"signals": {name: summarize(rows) for name, rows in outcomes.items()},
            "items": {name: [o.__dict__ for o in rows] for name, rows in outcomes.items()}}


def summarize(outcomes: list[Outcome]) -> dict:
    paused = [o for o in outcomes if o.kind == "pause"]
    complete = [o for o in outcomes if o.kind == "complete"]
    ended = [o.endpoint_ms for o in complete if o.endpoint_ms is not None]
    model_ms = [ms for o in outcomes for ms in o.model_ms]
    return {
        "items": len(outcomes), "paused_items": len(paused), "complete_items": len(complete),
        "false_cutoffs": sum(o.cut_off for o in outcomes),
        "false_cutoff_rate": round(sum(o.cut_off for o in outcomes) / max(1, len(outcomes)), 4),
        "paused_cut_off": sum(o.cut_off for o in paused),
        "complete_cut_off": sum(o.cut_off for o in complete),
        "never_ended": sum(o.endpoint_ms is None and not o.cut_off for o in outcomes),
        "complete_endpoint_ms": percentiles(ended),
        "all_endpoint_ms": percentiles([o.endpoint_ms for o in outcomes if o.endpoint_ms is not None and not o.cut_off]),
        "model_ms": percentiles(model_ms),
    }


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 1), "p90": round(p90, 1),
            "max": round(ordered[-1], 1)}
