"""Fixed phrases synthesized once at start-up, so the deterministic answers cost no TTS time.

The last levels of the fallback cascade ("sorry, could you say that again?") and the fillers
spoken while a remote model gets going must work even when the TTS engine has just failed, so
their audio is made before the server reports ready.
"""

from __future__ import annotations

import logging

import numpy as np

from .engines.base import TextToSpeech

log = logging.getLogger("voice_pipeline.phrasebook")

SORRY = "Sorry, could you say that again?"
FILLER = "Let me think about that."
LLM_OFF = "Sorry, I can only help with simple things like the time right now."
STT_OFF = "I can't listen right now. Please type your question instead."
CUT = "Sorry, I lost my connection there."

STANDARD_PHRASES = (SORRY, FILLER, LLM_OFF, STT_OFF, CUT)


class Phrasebook:
    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._audio: dict[str, np.ndarray] = {}

    def get(self, text: str) -> np.ndarray | None:
        return self._audio.get(text.strip())

    def add(self, text: str, audio: np.ndarray) -> None:
        self._audio[text.strip()] = audio

    def __contains__(self, text: str) -> bool:
        return text.strip() in self._audio

    @classmethod
    async def build(cls, tts: TextToSpeech | None, phrases) -> "Phrasebook":
        """Synthesize every phrase; a phrase that fails is left out (and logged), never fatal."""
        book = cls(tts.sample_rate_hz if tts else 22_050)
        if tts is None:
            return book
        for text in dict.fromkeys(phrases):
            try:
                pieces = [audio async for audio in tts.synthesize(text)]
            except Exception:
                log.warning("could not pre-synthesize a phrase (%d chars)", len(text))
                continue
            if pieces:
                book.add(text, np.concatenate(pieces).astype(np.float32))
        return book
