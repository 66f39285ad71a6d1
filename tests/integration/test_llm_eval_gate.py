"""CI gate: the committed voice adapter, on the fast held-out subset, is at least as good as the
committed fast-mode figures on the voice measures, and no worse than the base model on facts.
Counts only (greedy decoding is reproducible); the timings are reported, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from voice_pipeline.finetune import evaluate
from voice_pipeline.finetune.export import ADAPTER_PATH, MANIFEST_PATH, sha256

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fast_results():
    # The thread count of the committed run: llama.cpp's sums may round differently with another.
    previous = evaluate.THREADS
    evaluate.THREADS = evaluate.committed("fast")["settings"]["threads"]
    try:
        return evaluate.run(fast=True)
    finally:
        evaluate.THREADS = previous


def test_committed_adapter_matches_its_manifest():
    manifest = json.loads(MANIFEST_PATH.read_text())
    assert manifest["adapter"] == ADAPTER_PATH.name
    assert sha256(ADAPTER_PATH) == manifest["sha256"]
    assert ADAPTER_PATH.stat().st_size < 8 * 1024 * 1024


def test_tuned_voice_measures_hold_the_committed_figures(fast_results):
    committed = evaluate.committed("fast")["tuned"]
    tuned = fast_results["tuned"]
    assert tuned["heldout_prompts"] == committed["heldout_prompts"]
    assert tuned["first_piece_within_20_tokens"] >= committed["first_piece_within_20_tokens"]
    assert tuned["formatted_replies"] <= committed["formatted_replies"]
    assert tuned["cut_by_max_tokens"] <= committed["cut_by_max_tokens"]


def test_tuned_is_not_worse_than_base(fast_results):
    base, tuned = fast_results["base"], fast_results["tuned"]
    assert tuned["factual_correct"] >= base["factual_correct"]
    assert tuned["formatted_replies"] <= base["formatted_replies"]
    assert tuned["mean_words_per_reply"] < base["mean_words_per_reply"]


def test_timings_are_reported(fast_results):
    for model in ("base", "tuned"):
        assert fast_results[model]["median_ttft_ms"] > 0
        assert fast_results[model]["median_t20_ms"] >= fast_results[model]["median_ttft_ms"]


def test_adapter_changes_the_reply():
    from voice_pipeline.finetune.ask import ask

    assert ask("Give me a bulleted list of things to pack for camping.", "base")["reply"] != ask(
        "Give me a bulleted list of things to pack for camping.", "tuned")["reply"]


def test_ask_json_has_the_reply_and_its_timings():
    out = subprocess.run(
        [sys.executable, "-m", "voice_pipeline.app.cli", "ask", "What is the capital of France?", "--model", "tuned", "--json"],
        capture_output=True, text=True, check=True, timeout=240,
    ).stdout
    answer = json.loads(out)
    assert list(answer) == ["reply", "ttft_ms", "t20_ms", "tokens"]
    assert answer["reply"] and answer["tokens"] > 0
    assert answer["t20_ms"] >= answer["ttft_ms"] > 0
