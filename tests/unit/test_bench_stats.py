"""The benchmark's percentiles, WER and noise mixing: pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from voice_pipeline.bench.corpus import CorpusItem, coloured_noise, mix_noise
from voice_pipeline.bench.stats import edit_distance, normalize_text, percentile, ratio, summarize, word_error_rate


@pytest.mark.parametrize("pct", [0, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(pct: float) -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 11.0]
    assert percentile(values, pct) == pytest.approx(float(np.percentile(values, pct)))


def test_summarize_skips_missing_and_orders() -> None:
    s = summarize([30.0, None, 10.0, 20.0])
    assert s["count"] == 3 and s["min"] == 10.0 and s["max"] == 30.0 and s["p50"] == 20.0
    assert s["min"] <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"]
    assert summarize([None])["p95"] is None and summarize([])["count"] == 0


def test_normaliser_drops_case_punctuation_and_maps_spellings() -> None:
    assert normalize_text("What's the COLOUR, of   the sky?") == ["what's", "the", "color", "of", "the", "sky"]
    assert normalize_text("well-known 2 things") == ["well", "known", "two", "things"]


def test_edit_distance_counts_substitutions_insertions_deletions() -> None:
    assert edit_distance("a b c".split(), "a b c".split()) == 0
    assert edit_distance("a b c".split(), "a x c".split()) == 1
    assert edit_distance("a b c".split(), "a c".split()) == 1
    assert edit_distance("a b".split(), "a b c d".split()) == 2
    assert edit_distance([], ["a"]) == 1


def test_wer_is_corpus_level() -> None:
    result = word_error_rate([("the cat sat", "the cat sat"), ("a dog", "a frog")])
    assert result == {"wer": 0.2, "errors": 1, "words": 5, "utterances": 2}
    assert word_error_rate([])["wer"] is None


def test_ratio_needs_both_sides() -> None:
    assert ratio(300.0, 100.0) == 3.0
    assert ratio(None, 100.0) is None and ratio(100.0, None) is None and ratio(100.0, 0.0) is None


@pytest.mark.parametrize("kind", ["pink", "brown"])
def test_noise_is_mixed_at_the_requested_snr(kind: str) -> None:
    rng = np.random.default_rng(1)
    speech = (0.3 * np.sin(np.arange(16_000) * 2 * np.pi * 220 / 16_000)).astype(np.float32)
    item = CorpusItem("x", "text", "piper", "v", noise_kind=kind, snr_db=10.0)
    mixed = mix_noise(speech.copy(), speech, item, rng, [], (0, len(speech)))
    noise = mixed - speech
    snr_db = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
    assert snr_db == pytest.approx(10.0, abs=0.5)


def test_brown_noise_has_more_low_frequency_power_than_pink() -> None:
    def low_share(kind: str) -> float:
        spectrum = np.abs(np.fft.rfft(coloured_noise(np.random.default_rng(2), 32_000, kind))) ** 2
        return spectrum[:200].sum() / spectrum.sum()

    assert low_share("brown") > low_share("pink")


def test_babble_covers_any_length_from_short_sources() -> None:
    from voice_pipeline.bench.corpus import babble

    pool = [np.ones(300, np.float32), np.ones(1000, np.float32), np.ones(50, np.float32)]
    for n in (10, 299, 301, 2500):
        out = babble(np.random.default_rng(n), pool, n)
        assert out.shape == (n,) and np.all(out == 3.0)


def test_playback_gaps_are_the_stalls_of_audio_played_as_it_arrived():
    from voice_pipeline.bench.stats import playback_gaps_ms

    rate = 1000  # samples per second: 100 samples play for 100 ms
    # Sent ahead of real time (a lead) and then paced: never a stall.
    assert playback_gaps_ms([(0.0, 100), (0.0, 100), (0.15, 100), (0.25, 100)], rate) == []
    # The third frame comes 150 ms after the first two have played: one stall, then on from there.
    assert playback_gaps_ms([(0.0, 100), (0.1, 100), (0.35, 100), (0.45, 100), (0.6, 100)], rate) == [150.0, 50.0]
    assert playback_gaps_ms([], rate) == []
