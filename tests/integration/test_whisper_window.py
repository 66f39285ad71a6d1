"""The fitted encoder window on the real tiny.en model: the same words as the 30 s window, no
restarted transcript, a forced prefix kept, and long audio handed to faster-whisper's own windows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voice_pipeline.app.settings import SttSettings
from voice_pipeline.bench.stats import normalize_text
from voice_pipeline.engines.whisper import WhisperStt

from .spoken_audio import spoken

QUESTIONS = ["What is the capital of France?", "What should I cook for dinner tonight?"]


@pytest.fixture(scope="module")
def engines():
    return {window: WhisperStt(SttSettings(encoder_window=window)) for window in ("fitted", "full")}


@pytest.mark.parametrize("question", QUESTIONS)
def test_fitted_window_hears_the_same_words_once(engines, piper_say, question):
    audio = spoken(piper_say, question)
    fitted = asyncio.run(engines["fitted"].transcribe(audio, final=True))
    full = asyncio.run(engines["full"].transcribe(audio, final=True))
    assert normalize_text(fitted.text) == normalize_text(question) == normalize_text(full.text)
    assert fitted.final and fitted.audio_ms == pytest.approx(1000 * len(audio) / 16_000)
    assert engines["fitted"].name.endswith(":fitted") and not engines["full"].name.endswith(":fitted")


def test_forced_prefix_is_kept_and_continued(engines, piper_say):
    decoder = engines["fitted"]._fitted
    text = decoder.transcribe(spoken(piper_say, QUESTIONS[0]), prefix="What is the")
    assert normalize_text(text) == normalize_text(QUESTIONS[0])


def test_audio_longer_than_a_window_uses_faster_whispers_windows(engines, piper_say):
    speech = spoken(piper_say, QUESTIONS[0])
    long_audio = np.concatenate([np.zeros(16_000 * 31, np.float32), speech])
    assert not engines["fitted"]._fitted.fits(long_audio)
    text = asyncio.run(engines["fitted"].transcribe(long_audio, final=True)).text
    assert "france" in normalize_text(text)


def test_unknown_window_is_a_config_error():
    from voice_pipeline.errors import ConfigError

    with pytest.raises(ConfigError):
        WhisperStt(SttSettings(encoder_window="tiny"))
