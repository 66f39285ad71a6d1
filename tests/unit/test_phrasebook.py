"""Pre-synthesized phrases: made once, cached on disk, never fatal."""

import numpy as np

from voice_pipeline.reply.phrasebook import Phrasebook

from .fakes import FakeTts


class CountingTts(FakeTts):
    name = "counting"

    def __init__(self, fail_on: str = ""):
        super().__init__()
        self.fail_on = fail_on

    async def synthesize(self, text, *, urgent=False, first=False):
        if text == self.fail_on:
            raise RuntimeError("scripted failure")
        async for audio in super().synthesize(text):
            yield audio


async def test_phrases_are_synthesized_once_then_loaded_from_disk(tmp_path):
    tts = CountingTts()
    book = await Phrasebook.build(tts, ["Hello there.", "Sorry."], tmp_path)
    assert "Hello there." in book and len(book.get("Hello there.")) > 0
    again_tts = CountingTts()
    again = await Phrasebook.build(again_tts, ["Hello there.", "Sorry."], tmp_path)
    assert again_tts.texts == [] and np.array_equal(again.get("Sorry."), book.get("Sorry."))


async def test_a_failing_phrase_is_left_out_and_nothing_is_cached(tmp_path):
    book = await Phrasebook.build(CountingTts(fail_on="Sorry."), ["Hello there.", "Sorry."], tmp_path)
    assert "Hello there." in book and "Sorry." not in book
    assert list(tmp_path.iterdir()) == []


async def test_no_tts_means_an_empty_book():
    book = await Phrasebook.build(None, ["Hello."])
    assert "Hello." not in book
