"""faster-whisper STT: GPU when CTranslate2 sees one, int8 on the CPU otherwise; the encoder window
fitted to the utterance by default (whisper_window.py), faster-whisper's 30 s windows on request;
with the fitted window, the passes of all sessions batched into one model call (stt_batch.py).
Without batching (or with the 30 s window) each pass is one call on a worker of a thread pool."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future

import numpy as np

from voice_pipeline.app.settings import SttSettings, switch_on
from voice_pipeline.engines.base import Transcript
from voice_pipeline.engines.registry import whisper_model_dir
from voice_pipeline.engines.stt_batch import SttBatcher
from voice_pipeline.engines.whisper_window import FittedWindowDecoder
from voice_pipeline.errors import ConfigError, EngineError
from voice_pipeline.threads import named_thread_pool


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # a broken CUDA install must not stop the CPU path
        return False


class WhisperStt:
    name = "faster-whisper"
    _batcher: SttBatcher | None = None  # set in __init__ when stt.batch is on (fitted window only)

    def __init__(self, settings: SttSettings, workers: int = 1) -> None:
        from faster_whisper import WhisperModel

        device = settings.device if settings.device != "auto" else ("cuda" if cuda_available() else "cpu")
        compute_type = settings.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        self.device, self.compute_type = device, compute_type
        self.name = f"faster-whisper:{settings.model}:{device}:{compute_type}"
        self._beam_size = settings.beam_size
        self._model = WhisperModel(
            whisper_model_dir(settings.model),
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads or (os.cpu_count() or 1),
            num_workers=workers,
        )
        self._executor = named_thread_pool(workers, "stt")
        self._workers = workers
        self._in_flight = 0  # passes submitted and not yet finished (worker threads decrement it)
        self._count_lock = threading.Lock()
        if settings.encoder_window not in {"fitted", "full"}:
            raise ConfigError(f"stt.encoder_window must be fitted or full, not {settings.encoder_window!r}")
        self._fitted = None
        if settings.encoder_window == "fitted":
            self._fitted = FittedWindowDecoder(self._model, settings.beam_size, settings.window_margin_s)
            self.name += ":fitted"
        try:
            batch = switch_on(settings.batch, auto=True)
        except ConfigError as exc:
            raise ConfigError(f"stt.batch: {exc}") from None
        if batch and self._fitted is not None:  # the batcher owns its runner threads, as the pool its workers
            # On the CPU each pass in a batch adds its own cost: shed partials as soon as one waits.
            room = settings.batch_max if device == "cuda" else 0
            self._batcher = SttBatcher(self._decode_batch, settings.batch_max, runners=workers, room=room)

    @property
    def batched(self) -> bool:
        return self._batcher is not None

    def _decode_batch(self, audios_16k: list[np.ndarray]) -> list[str]:
        """The batcher's decode: the fitted windows in one call; audio too long for one (rare) after
        them, one 30 s-window pass each, in the same thread."""
        assert self._fitted is not None
        fitting = [i for i, audio in enumerate(audios_16k) if self._fitted.fits(audio)]
        texts = [""] * len(audios_16k)
        if fitting:
            for i, text in zip(fitting, self._fitted.transcribe_batch([audios_16k[i] for i in fitting])):
                texts[i] = text
        for i in sorted(set(range(len(audios_16k))) - set(fitting)):
            texts[i] = self._full_windows(audios_16k[i])
        return texts

    def _transcribe_blocking(self, audio_16k: np.ndarray, final: bool) -> Transcript:
        if self._fitted is not None and self._fitted.fits(audio_16k):
            text = self._fitted.transcribe(audio_16k)
            return Transcript(text=text, final=final, audio_ms=1000.0 * len(audio_16k) / 16_000)
        text = self._full_windows(audio_16k)
        return Transcript(text=text, final=final, audio_ms=1000.0 * len(audio_16k) / 16_000)

    def _full_windows(self, audio_16k: np.ndarray) -> str:
        # The call and the iteration of its lazy segment generator both run here, in the worker.
        segments, _info = self._model.transcribe(
            audio_16k,
            language="en",
            beam_size=self._beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

    @property
    def waiting(self) -> int:
        """Passes waiting for a free worker, or batched: due passes beyond the batcher's room (on
        CUDA what the next batch will not take; on the CPU all that wait) (the overload signal:
        session/load.py)."""
        if self._batcher is not None:
            return self._batcher.waiting
        with self._count_lock:
            return max(0, self._in_flight - self._workers)

    async def transcribe(self, audio_16k: np.ndarray, *, final: bool) -> Transcript:
        if self._batcher is not None:  # a failed batch already raised EngineError for its passes
            return await self._batcher.transcribe(audio_16k, final=final)
        try:
            job = self._executor.submit(self._transcribe_blocking, audio_16k, final)
            with self._count_lock:
                self._in_flight += 1
            job.add_done_callback(self._finished)  # when the worker returns, or the job is cancelled unstarted
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise EngineError("stt", f"{type(exc).__name__}: {exc}") from exc

    def _finished(self, _job: Future[Transcript]) -> None:
        with self._count_lock:
            self._in_flight -= 1

    async def warm_up(self) -> None:
        await self.transcribe(np.zeros(16_000, dtype=np.float32), final=True)
