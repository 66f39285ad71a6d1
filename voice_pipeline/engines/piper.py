"""Piper TTS: one speakable piece of text in, its audio out, synthesized in a worker thread."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

import numpy as np

from ..errors import EngineError
from ..settings import TtsSettings
from ..threads import iterate_in_thread
from .registry import piper_voice


def onnx_cuda_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class PiperTts:
    def __init__(self, settings: TtsSettings, workers: int = 1) -> None:
        from piper import PiperVoice, SynthesisConfig

        model, config = piper_voice(settings.voice)
        self._voice = PiperVoice.load(model, config_path=config, use_cuda=onnx_cuda_available())
        self._config = SynthesisConfig(length_scale=settings.length_scale)
        self.sample_rate_hz = self._voice.config.sample_rate
        self.name = f"piper:{settings.voice}"
        stat = os.stat(model)
        self.cache_key = f"{self.name}:{settings.length_scale}:{stat.st_size}:{int(stat.st_mtime)}"
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tts")

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        chunks = iterate_in_thread(lambda: self._voice.synthesize(text, self._config), self._executor)
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
