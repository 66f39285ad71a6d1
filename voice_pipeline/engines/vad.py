"""Silero VAD v6 (the ONNX file shipped inside faster-whisper), streamed 32 ms at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FRAME_SAMPLES = 512  # 32 ms at 16 kHz, the model's native window
_CONTEXT_SAMPLES = 64


def silero_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVad:
    """One stream's VAD: feed 16 kHz float32 audio of any length, get one probability per 32 ms."""

    def __init__(self, session=None) -> None:
        self._session = session or load_silero_session()
        self._pending = np.zeros(0, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, audio_16k: np.ndarray) -> list[float]:
        """Speech probabilities for every whole 32 ms window now available (in order)."""
        self._pending = np.concatenate([self._pending, audio_16k.astype(np.float32, copy=False)])
        probabilities = []
        while len(self._pending) >= FRAME_SAMPLES:
            window, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
            model_input = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self._session.run(None, {"input": model_input, "h": self._h, "c": self._c})
            self._context = window[-_CONTEXT_SAMPLES:]
            probabilities.append(float(np.asarray(out).ravel()[0]))
        return probabilities


def load_silero_session():
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
