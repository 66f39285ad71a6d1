"""Percentile summaries and word error rate (with a small text normaliser), pure functions."""

from __future__ import annotations

import math
import re
from typing import Iterable

PERCENTILES = (50, 95, 99)
_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
    "7": "seven", "8": "eight", "9": "nine", "10": "ten", "20": "twenty", "100": "hundred",
}
_SPELLINGS = {"colour": "color", "okay": "ok", "grey": "gray", "autumn's": "autumns", "favourite": "favorite"}
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile of a non-empty list (numpy's default method)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Iterable[float | None]) -> dict:
    """p50, p95, p99, min, max, mean and count of the values that are present."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "min": None, "max": None, "mean": None}
    out = {"count": len(present)}
    for pct in PERCENTILES:
        out[f"p{pct}"] = round(percentile(present, pct), 1)
    out.update(min=round(min(present), 1), max=round(max(present), 1), mean=round(sum(present) / len(present), 1))
    return out


def playback_gaps_ms(frames: Iterable[tuple[float, int]], rate_hz: int) -> list[float]:
    """The stalls a client playing a reply as it arrives would have heard: `frames` are (arrival
    time in s, samples) in order; playback starts with the first and plays each frame once it has
    both arrived and the frames before it have played. Each stall (a frame that came after its
    play time) in ms, in order; none for a reply that kept ahead of its playback."""
    gaps: list[float] = []
    play_at: float | None = None
    for arrived_t, samples in frames:
        if play_at is not None and arrived_t - play_at >= 0.001:  # under a millisecond is rounding
            gaps.append(round(1000.0 * (arrived_t - play_at), 1))
        play_at = max(arrived_t, play_at if play_at is not None else arrived_t) + samples / rate_hz
    return gaps


def normalize_text(text: str) -> list[str]:
    """Lower case, no punctuation, hyphens split, digits and British spellings mapped."""
    text = text.lower().replace("-", " ").replace("\u2019", "'")
    words = _NON_WORD.sub(" ", text).split()
    words = [w.strip("'") for w in words]
    return [_SPELLINGS.get(w, _NUMBERS.get(w, w)) for w in words if w]


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, deletions, insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
        previous = current
    return previous[-1]


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> dict:
    """Corpus WER: total word edits over total reference words, for (reference, hypothesis) pairs."""
    errors = words = utterances = 0
    for reference, hypothesis in pairs:
        ref, hyp = normalize_text(reference), normalize_text(hypothesis)
        errors += edit_distance(ref, hyp)
        words += len(ref)
        utterances += 1
    return {"wer": round(errors / words, 4) if words else None, "errors": errors, "words": words,
            "utterances": utterances}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)
