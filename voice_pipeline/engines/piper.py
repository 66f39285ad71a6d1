"""Piper TTS: one speakable piece of text in, its audio out, synthesized in worker threads.

Piper phonemizes with espeak-ng, whose state is global to the process; piper-tts (1.8) guards
every espeak call with its own process-wide lock, and the voice's onnxruntime session may run
from several threads at once. So `tts.workers` syntheses run at the same time (sessions do not
queue behind each other's long replies), each in a worker thread that holds one of the pool's
slots until its synthesis has returned, however its consumer was cancelled."""

from __future__ import annotations

import os
from typing import AsyncIterator

import numpy as np

from voice_pipeline.app.settings import TtsSettings
from voice_pipeline.engines.onnx_device import CUDA, onnx_providers
from voice_pipeline.engines.registry import piper_voice
from voice_pipeline.errors import EngineError
from voice_pipeline.threads import ThreadOwnedPool


def espeak_is_locked() -> bool:
    """Whether this piper-tts serializes its espeak-ng calls itself (then syntheses may overlap)."""
    from piper import voice

    return hasattr(voice, "_ESPEAK_PHONEMIZER_LOCK")


class PiperTts:
    def __init__(self, settings: TtsSettings) -> None:
        from piper import PiperVoice, SynthesisConfig

        model, config = piper_voice(settings.voice)
        voice = PiperVoice.load(model, config_path=config, use_cuda=CUDA in onnx_providers(settings.device))
        workers = max(1, settings.workers) if espeak_is_locked() else 1
        # Two lanes over the one voice: a reply's first piece (someone is waiting to hear it) and
        # the later pieces (needed only once the audio before them has played), whose threads run
        # at a lower CPU priority, so they never hold a first piece back, nor take the CPU from one.
        # Without espeak's own lock the two lanes would share espeak: one lane, as before.
        self._voice = ThreadOwnedPool([voice] * workers, thread_name_prefix="tts")
        self._later = (ThreadOwnedPool([voice] * workers, thread_name_prefix="tts-later", nice=settings.later_nice)
                       if espeak_is_locked() and settings.later_nice > 0 else self._voice)
        self._config = SynthesisConfig(length_scale=settings.length_scale)
        self.sample_rate_hz = voice.config.sample_rate
        self.name = f"piper:{settings.voice}"
        stat = os.stat(model)
        self.cache_key = f"{self.name}:{settings.length_scale}:{stat.st_size}:{int(stat.st_mtime)}"

    async def synthesize(self, text: str, *, first: bool = False) -> AsyncIterator[np.ndarray]:
        lane = self._voice if first else self._later
        chunks = lane.stream(lambda voice: voice.synthesize(text, self._config), urgent=first)
        try:
            async for chunk in chunks:
                yield chunk.audio_float_array
        except Exception as exc:
            raise EngineError("tts", f"{type(exc).__name__}: {exc}") from exc
        finally:
            await chunks.aclose()

    async def warm_up(self) -> None:
        async for _ in self.synthesize("Ready."):
            pass
