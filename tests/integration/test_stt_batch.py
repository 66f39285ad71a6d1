"""STT batched across sessions on the real tiny.en model: passes that are due together run as one
call and each hears what the unbatched path hears for its audio (plus the batch's padding, if any)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voice_pipeline.app.settings import SttSettings
from voice_pipeline.bench.stats import normalize_text
from voice_pipeline.engines.whisper import WhisperStt
from voice_pipeline.errors import ConfigError

from .spoken_audio import spoken

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "What should I cook for dinner tonight?", "How far away is the moon from the earth?",
             "Tell me a short joke about computers."]


@pytest.fixture(scope="module")
def engines():
    return {mode: WhisperStt(SttSettings(batch=mode)) for mode in ("on", "off")}


async def together(stt: WhisperStt, audios: list[np.ndarray], final: bool = True) -> list[str]:
    return [t.text for t in await asyncio.gather(*(stt.transcribe(a, final=final) for a in audios))]


def padded_to(audio: np.ndarray, samples: int) -> np.ndarray:
    return np.concatenate([audio, np.zeros(samples - len(audio), np.float32)])


def test_due_passes_run_as_one_batch_and_each_hears_what_one_pass_hears(engines, piper_say):
    spoken_audio = [spoken(piper_say, question) for question in QUESTIONS]
    longest = max(len(a) for a in spoken_audio)
    audios = [padded_to(a, longest) for a in spoken_audio]  # windows of one length: the batch pads none
    batched, alone = engines["on"], engines["off"]
    assert batched.batched and not alone.batched
    before = batched._batcher.batches
    texts = asyncio.run(together(batched, audios))
    assert batched._batcher.batches == before + 1  # submitted in the same turn of the loop: one call
    assert texts == [asyncio.run(alone.transcribe(a, final=True)).text for a in audios]
    assert normalize_text(texts[0]) == normalize_text(QUESTIONS[0])


def test_a_shorter_window_hears_its_audio_plus_the_batchs_padding(engines, piper_say):
    audios = [spoken(piper_say, question) for question in QUESTIONS[:3]]
    longest = max(len(a) for a in audios)
    texts = asyncio.run(together(engines["on"], audios))
    # Exactly the unbatched decoder's words for the same audio with the batch's silence appended
    # (which can change a word: scripts/stt_batch_bench.py --quality counts how often).
    assert texts == [asyncio.run(engines["off"].transcribe(padded_to(a, longest), final=True)).text for a in audios]


def test_audio_longer_than_a_window_shares_the_batch_through_the_30_s_windows(engines, piper_say):
    speech = spoken(piper_say, QUESTIONS[0])
    long_audio = np.concatenate([np.zeros(16_000 * 31, np.float32), speech])
    long_text, short_text = asyncio.run(together(engines["on"], [long_audio, speech]))
    assert "france" in normalize_text(long_text)
    assert normalize_text(short_text) == normalize_text(QUESTIONS[0])


def test_the_setting_picks_the_path():
    assert not WhisperStt(SttSettings(batch="on", encoder_window="full")).batched  # 30 s windows: unbatched
    with pytest.raises(ConfigError, match="stt.batch"):
        WhisperStt(SttSettings(batch="sometimes"))
