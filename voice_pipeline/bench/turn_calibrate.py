"""Choose the audio end-of-turn thresholds on the pause corpus's `calibrate` split.

One pass records, for every pause the VAD found in every turn, the models' scores and wall times
and how long the silence really lasted (`turn_eval.run_turn` under a policy that never ends a turn
early). `replay` then plays any policy over those records without running a model again, so a
grid of thresholds costs milliseconds; the chosen policy is re-measured for real by `turn_eval`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics

from voice_pipeline.bench.pause_corpus import SpokenTurn
from voice_pipeline.bench.turn_eval import FRAME_MS, Outcome
from voice_pipeline.session.end_of_turn import AudioPolicy, judge

PLAIN_SILENCE_MS = 300.0
LONGEST_HOLD_MS = 1200.0  # TurnConfig.max_endpoint_silence_ms: how long a pending score is waited for
SURE = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 1.01)
UNSURE = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 1.01)
TEXT_SURE = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _wait_ms(signal: str, policy: AudioPolicy, pause: dict) -> float:
    """Silence after the last word at which this pause would end the turn (no resumption)."""
    before_ms = pause["at_ms"] - pause["speech_end_ms"]  # silence already heard at the pause
    audio_ms, text_ms = pause.get("audio_ms", 0.0), pause.get("text_ms", 0.0)
    use_text = signal == "audio+text"
    decision, wait = policy.decide(pause["audio"])
    land_ms = audio_ms
    if use_text and decision != "incomplete":
        land_ms = max(audio_ms, text_ms)
        ruling = judge(policy, pause["audio"], "", pause.get("text"), False, True)
        assert ruling is not None
        wait = ruling[1]
    if land_ms > LONGEST_HOLD_MS - before_ms:
        return LONGEST_HOLD_MS
    silence_ms = max(PLAIN_SILENCE_MS if wait is None else wait, before_ms + land_ms)
    return math.ceil(silence_ms / FRAME_MS) * FRAME_MS


def replay(outcome: Outcome, turn: SpokenTurn, signal: str, policy: AudioPolicy) -> tuple[bool, float | None]:
    """(cut off?, endpoint ms after the last word) for one recorded turn under `policy`."""
    for pause in outcome.pauses:
        wait = _wait_ms(signal, policy, pause)
        resumed = pause["resumed_ms"]
        if resumed is not None and wait < resumed - pause["speech_end_ms"]:
            return True, None
        if resumed is None:
            return False, pause["speech_end_ms"] + wait - turn.speech_end_ms
    return False, None


def score(outcomes: list[Outcome], turns: dict[str, SpokenTurn], signal: str, policy: AudioPolicy) -> dict:
    results = [replay(o, turns[o.item_id], signal, policy) for o in outcomes]
    ends = [ms for (cut, ms), o in zip(results, outcomes) if ms is not None and o.kind == "complete"]
    all_ends = [ms for cut, ms in results if ms is not None]
    return {"cut_off_rate": sum(cut for cut, _ in results) / max(1, len(results)),
            "complete_p50_ms": statistics.median(ends) if ends else math.inf,
            "all_p50_ms": statistics.median(all_ends) if all_ends else math.inf}


def grid(outcomes: list[Outcome], turns: dict[str, SpokenTurn], signal: str, max_cut_off_rate: float,
         base: AudioPolicy | None = None) -> tuple[AudioPolicy, dict]:
    """The policy with the lowest median endpoint over all turns within the cut-off limit."""
    base = base or AudioPolicy()
    best: tuple[float, AudioPolicy, dict] | None = None
    texts = TEXT_SURE if signal == "audio+text" else (base.text_sure,)
    for sure, unsure, text_sure in itertools.product(SURE, UNSURE, texts):
        if unsure > sure:
            continue
        policy = dataclasses.replace(base, sure=sure, unsure=unsure, text_sure=text_sure)
        figures = score(outcomes, turns, signal, policy)
        if figures["cut_off_rate"] > max_cut_off_rate:
            continue
        key = figures["all_p50_ms"]
        if best is None or key < best[0]:
            best = (key, policy, figures)
    if best is None:
        raise ValueError(f"no policy keeps false cut-offs within {max_cut_off_rate}")
    return best[1], best[2]
