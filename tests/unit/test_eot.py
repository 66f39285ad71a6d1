"""The end-of-turn scorer's pure parts: text normalization, calibration, metrics, and the async
wrapper around a scripted fake model (no llama.cpp here)."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from voice_pipeline.engines.text_eot import EndOfTurnScorer
from voice_pipeline.session.end_of_turn import (
    NEUTRAL_PROBABILITY,
    Calibration,
    LatestTextScorer,
    common_prefix_len,
    normalize,
)
from voice_pipeline.eot_commands import classification, endpoint_wait, fit_logistic, score_rows
from voice_pipeline.session.turn import TurnConfig


class FakeEndLogProb:
    """Scripted log-probabilities; records the order, the thread and how many calls overlap."""

    def __init__(self, log_probs: dict[str, float], release: threading.Event | None = None) -> None:
        self.log_probs, self.release = log_probs, release
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.active = self.max_active = 0
        self._guard = threading.Lock()
        self.entered = threading.Event()  # set once a call is inside the worker thread

    def end_log_prob(self, text: str) -> float:
        with self._guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.calls.append(text)
        self.entered.set()
        self.threads.add(threading.current_thread().name)
        if self.release is not None:
            self.release.wait(5)
        with self._guard:
            self.active -= 1
        return self.log_probs[normalize(text)]


def test_normalize_gives_lowercase_unpunctuated_text():
    assert normalize("  What's the Weather,  TOMORROW? ") == "what's the weather tomorrow"
    assert normalize("...") == ""


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2
    assert common_prefix_len([], [1]) == 0
    assert common_prefix_len([9], [1]) == 0


def test_calibration_is_increasing_and_crosses_one_half_at_minus_bias_over_weight():
    calibration = Calibration(weight=1.5, bias=6.0)
    assert calibration.probability(-4.0) == pytest.approx(0.5)
    values = [calibration.probability(x) for x in (-2000.0, -20.0, -4.0, -1.0, 0.0)]
    assert values == sorted(values)
    assert values[0] == 0.0 and 0.99 < values[-1] < 1.0


def test_calibration_round_trips_through_its_file(tmp_path):
    path = tmp_path / "calibration.json"
    Calibration(weight=1.25, bias=3.5).save(path, feature="x")
    assert Calibration.load(path) == Calibration(weight=1.25, bias=3.5)


def test_fit_logistic_recovers_the_generating_parameters():
    # Deterministic data with label frequencies equal to sigmoid(2x + 1) at each x.
    xs, ys = [], []
    for i in range(-30, 31):
        x = i / 10
        p = 1 / (1 + math.exp(-(2 * x + 1)))
        positives = round(p * 200)
        xs += [x] * 200
        ys += [True] * positives + [False] * (200 - positives)
    weight, bias = fit_logistic(xs, ys, l2=0.0)
    assert weight == pytest.approx(2.0, abs=0.05)
    assert bias == pytest.approx(1.0, abs=0.05)


def test_classification_counts_false_cutoffs_among_incomplete_utterances():
    probabilities = [0.9, 0.8, 0.2, 0.7, 0.1, 0.4]
    labels = [True, True, True, False, False, False]
    report = classification(probabilities, labels, threshold=0.5)
    assert (report["true_complete"], report["missed_complete"]) == (2, 1)
    assert (report["false_cutoffs"], report["true_incomplete"]) == (1, 2)
    assert report["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["false_cutoff_rate"] == pytest.approx(1 / 3, abs=1e-4)


def test_endpoint_wait_uses_the_turn_taking_mapping():
    config = TurnConfig()
    wait = endpoint_wait([1.0, 1.0, 0.0, 0.5], [True, True, False, False], config)
    assert wait["without_hint_ms"] == config.endpoint_silence_ms
    assert wait["mean_complete_ms"] == config.min_endpoint_silence_ms
    assert wait["mean_incomplete_ms"] == (config.max_endpoint_silence_ms + config.endpoint_silence_ms) / 2


def test_score_rows_scores_prefixes_first_and_keeps_the_rows_order():
    model = FakeEndLogProb({"book a": -9.0, "book a table": -1.0, "thanks": -0.5})
    rows = [{"text": "thanks"}, {"text": "book a table"}, {"text": "book a"}]
    assert score_rows(model, rows) == [-0.5, -1.0, -9.0]
    assert model.calls == ["book a", "book a table", "thanks"]


async def test_probability_runs_the_model_in_its_worker_thread_and_calibrates():
    model = FakeEndLogProb({"what is the": -10.0, "what is the time": -1.0})
    scorer = EndOfTurnScorer(model, Calibration(weight=1.0, bias=4.0))
    try:
        low, high = await scorer.probability("what is the"), await scorer.probability("What is the time?")
    finally:
        scorer.close()
    assert low < 0.5 < high
    assert model.calls == ["what is the", "What is the time?"]
    assert all(name.startswith("eot") for name in model.threads)


async def test_empty_text_is_neutral_and_never_reaches_the_model():
    model = FakeEndLogProb({})
    scorer = EndOfTurnScorer(model, Calibration(weight=1.0, bias=0.0))
    try:
        assert await scorer.probability(" ,. ") == NEUTRAL_PROBABILITY
    finally:
        scorer.close()
    assert model.calls == []


async def test_concurrent_calls_are_evaluated_one_at_a_time_in_order():
    release = threading.Event()
    model = FakeEndLogProb({"a": -1.0, "a b": -2.0, "a b c": -3.0}, release)
    scorer = EndOfTurnScorer(model, Calibration(weight=1.0, bias=0.0))
    try:
        tasks = [asyncio.create_task(scorer.log_prob(text)) for text in ("a", "a b", "a b c")]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*tasks) == [-1.0, -2.0, -3.0]
    finally:
        scorer.close()
    assert model.max_active == 1
    assert model.calls == ["a", "a b", "a b c"]


async def test_latest_text_scorer_skips_texts_superseded_while_a_score_runs():
    release = threading.Event()
    model = FakeEndLogProb({"book": -5.0, "book a": -6.0, "book a table": -7.0, "book a table for two": -1.0}, release)
    scorer = EndOfTurnScorer(model, Calibration(weight=1.0, bias=0.0))
    seen: list[str] = []
    latest = LatestTextScorer(scorer, lambda text, p: seen.append(text))
    try:
        latest.submit("book")
        await asyncio.to_thread(model.entered.wait, 5)  # "book" is now in the worker thread
        latest.submit("book a")
        latest.submit("book a table")
        latest.submit("book a table for two")
        release.set()
        await latest._task
    finally:
        scorer.close()
    assert model.calls == ["book", "book a table for two"]
    assert seen == ["book", "book a table for two"]
    assert latest.latest == Calibration(weight=1.0, bias=0.0).probability(-1.0)


async def test_latest_text_scorer_cancel_drops_what_is_pending():
    release = threading.Event()
    model = FakeEndLogProb({"a": -1.0, "a b": -2.0}, release)
    scorer = EndOfTurnScorer(model, Calibration(weight=1.0, bias=0.0))
    seen: list[str] = []
    latest = LatestTextScorer(scorer, lambda text, p: seen.append(text))
    try:
        latest.submit("a")
        await asyncio.to_thread(model.entered.wait, 5)
        latest.submit("a b")
        latest.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await latest._task
    finally:
        scorer.close()
    assert model.calls == ["a"]
    assert seen == [] and latest.latest is None
