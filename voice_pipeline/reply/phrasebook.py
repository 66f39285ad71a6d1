"""Fixed phrases synthesized once at start-up, so the deterministic answers cost no TTS time.

The last levels of the fallback cascade ("sorry, could you say that again?") and the fillers
spoken while a remote model gets going must work even when the TTS engine has just failed, so
their audio is made before the server reports ready. It is kept on disk (keyed by the voice and
the phrases), so only the first start on a machine pays for the synthesis.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from voice_pipeline.engines.base import TextToSpeech

log = logging.getLogger("voice_pipeline.reply.phrasebook")

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
    async def build(cls, tts: TextToSpeech | None, phrases: Iterable[str], cache_dir: Path | None = None) -> "Phrasebook":
        """Synthesize every phrase (or load them from the cache); a failing phrase is left out."""
        book = cls(tts.sample_rate_hz if tts else 22_050)
        if tts is None:
            return book
        phrases = list(dict.fromkeys(phrases))
        cache = _cache_file(cache_dir, tts, phrases) if cache_dir else None
        if cache is not None and book._load(cache, phrases):
            return book
        for text in phrases:
            try:
                pieces = [audio async for audio in tts.synthesize(text)]
            except Exception:
                log.warning("could not pre-synthesize a phrase (%d chars)", len(text))
                continue
            if pieces:
                book.add(text, np.concatenate(pieces).astype(np.float32))
        if cache is not None and all(text.strip() in book for text in phrases):
            book._save(cache, phrases)
        return book

    def _load(self, path: Path, phrases: list[str]) -> bool:
        try:
            with np.load(path) as data:
                audio = [data[f"p{i}"] for i in range(len(phrases))]
        except (OSError, KeyError, ValueError):
            return False
        for text, samples in zip(phrases, audio):
            if len(samples):
                self.add(text, samples.astype(np.float32))
        return True

    def _save(self, path: Path, phrases: list[str]) -> None:
        """Written under a temporary name and renamed: a reader never sees half a file."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            arrays = {f"p{i}": self._audio[text.strip()] for i, text in enumerate(phrases)}
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
                np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
            os.replace(handle.name, path)
        except OSError:
            log.warning("could not cache the phrasebook in %s", path.parent)


def _cache_file(cache_dir: Path, tts: TextToSpeech, phrases: list[str]) -> Path:
    voice = getattr(tts, "cache_key", tts.name)  # the voice and whatever changes its sound
    key = hashlib.sha256("\n".join([voice, str(tts.sample_rate_hz), *phrases]).encode()).hexdigest()[:16]
    return cache_dir / f"phrases-{key}.npz"
