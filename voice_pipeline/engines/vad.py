"""Silero VAD v6 (the ONNX file shipped inside faster-whisper), streamed 32 ms at a time."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

FRAME_SAMPLES = 512  # 32 ms at 16 kHz, the model's native window
CONTEXT_SAMPLES = 64


def silero_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVad:
    """One stream's VAD: feed 16 kHz float32 audio of any length, get one probability per 32 ms."""

    def __init__(self, session: Any = None) -> None:
        self._session = session or load_silero_session()
        self._pending = np.zeros(0, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, audio_16k: np.ndarray) -> list[float]:
        """Speech probabilities for every whole 32 ms window now available (in order)."""
        self._pending = np.concatenate([self._pending, audio_16k.astype(np.float32, copy=False)])
        probabilities = []
        while len(self._pending) >= FRAME_SAMPLES:
            window, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
            model_input = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self._session.run(None, {"input": model_input, "h": self._h, "c": self._c})
            self._context = window[-CONTEXT_SAMPLES:]
            probabilities.append(float(np.asarray(out).ravel()[0]))
        return probabilities


class ThreadedVad:
    """A session's stream on the per-stream path (`vad.batch = false`): its own SileroVad, one job
    on the shared VAD executor per call; jobs of one stream run in the order they were queued."""

    def __init__(self, vad: SileroVad, executor: Executor) -> None:
        self._vad, self._executor = vad, executor

    async def process(self, audio_16k: np.ndarray) -> list[float]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._vad.process, audio_16k)

    def reset(self) -> None:
        self._executor.submit(self._vad.reset)  # after the jobs already queued, like the next call

    def close(self) -> None:
        """Nothing to release: the state goes with this object."""


def load_silero_session() -> Any:
    """An onnxruntime session for the VAD; it is small, so one thread and no memory arena."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(silero_model_path()), providers=["CPUExecutionProvider"], sess_options=options
    )
