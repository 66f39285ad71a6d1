"""Piper TTS: one speakable piece of text in, its audio out, synthesized in a worker thread.

Piper phonemizes with espeak-ng, whose state is global to the process, so one synthesis runs at a
time: the voice is lent to one worker thread (a `ThreadOwnedPool` of one) and is free again only
when that thread's synthesis has returned, however its consumer was cancelled."""

from __future__ import annotations

import os
from typing import AsyncIterator

import numpy as np

from voice_pipeline.app.settings import TtsSettings
from voice_pipeline.engines.registry import piper_voice
from voice_pipeline.errors import EngineError
from voice_pipeline.threads import ThreadOwnedPool


def onnx_cuda_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class PiperTts:
    def __init__(self, settings: TtsSettings) -> None:
        from piper import PiperVoice, SynthesisConfig

        model, config = piper_voice(settings.voice)
        voice = PiperVoice.load(model, config_path=config, use_cuda=onnx_cuda_available())
        self._voice = ThreadOwnedPool([voice], thread_name_prefix="tts")
        self._config = SynthesisConfig(length_scale=settings.length_scale)
        self.sample_rate_hz = voice.config.sample_rate
        self.name = f"piper:{settings.voice}"
        stat = os.stat(model)
        self.cache_key = f"{self.name}:{settings.length_scale}:{stat.st_size}:{int(stat.st_mtime)}"

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        chunks = self._voice.stream(lambda voice: voice.synthesize(text, self._config))
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
