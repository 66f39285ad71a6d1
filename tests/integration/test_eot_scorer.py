"""The end-of-turn scorer on the real SmolLM2 GGUF: KV prefix reuse, and its ordering of utterances."""

from __future__ import annotations

import pytest

from voice_pipeline.engines.text_eot import EndOfTurnScorer, LlamaEndLogProb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model():
    return LlamaEndLogProb(n_threads=1)


def fresh_log_prob(model: LlamaEndLogProb, text: str) -> float:
    model.forget()
    return model.end_log_prob(text)


def test_a_partial_that_extends_the_previous_one_evaluates_only_its_new_tokens(model):
    fresh_log_prob(model, "i'd like to book a flight to")
    before = model.evaluated_tokens
    extended = model.end_log_prob("i'd like to book a flight to denver")
    new_tokens = model.evaluated_tokens - before
    whole = len(model.prompt_tokens("i'd like to book a flight to denver"))
    assert 0 < new_tokens < whole - 5
    assert extended == pytest.approx(fresh_log_prob(model, "i'd like to book a flight to denver"), abs=1e-3)


def test_repeating_or_changing_the_text_gives_the_fresh_answer(model):
    first = fresh_log_prob(model, "what is the")
    assert model.end_log_prob("what is the") == pytest.approx(first, abs=1e-3)
    changed = model.end_log_prob("turn off the lights")
    assert changed == pytest.approx(fresh_log_prob(model, "turn off the lights"), abs=1e-3)


async def test_complete_utterances_score_above_their_cut_prefixes():
    scorer = EndOfTurnScorer.load()
    try:
        pairs = [("what's the weather tomorrow", "what's the weather tomorrow and"),
                 ("book a table for two", "book a table for"),
                 ("i'd like to book a flight to denver", "i'd like to book a flight to")]
        scored = [(await scorer.probability(whole), await scorer.probability(cut)) for whole, cut in pairs]
    finally:
        scorer.close()
    assert all(0.0 < p < 1.0 for pair in scored for p in pair)
    assert all(whole > cut for whole, cut in scored)
    assert scored[0][0] > 0.5 > scored[2][1]  # plainly complete, plainly not


def test_eval_eot_json_reports_the_heldout_figures_and_latency():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "voice_pipeline.app.cli", "eval", "eot", "--json"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    report = json.loads(out)
    assert list(report) == ["data_version", "calibration", "heldout", "endpoint_wait", "latency", "command"]
    assert {"precision", "recall", "false_cutoff_rate", "false_cutoffs"} <= set(report["heldout"])
    for call in ("partial_extends_previous", "whole_utterance_from_scratch"):
        figures = report["latency"][call]
        assert figures["calls"] > 0 and 0 < figures["median_ms"] <= figures["p95_ms"]
