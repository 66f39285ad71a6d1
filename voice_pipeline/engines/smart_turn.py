"""Smart Turn v3.2, Pipecat's audio end-of-turn model: P(the turn is complete | the last 8 s of audio).

The ONNX file ships inside the `pipecat-ai` wheel, installed without its dependencies (the set-up
runs `pip install --no-deps pipecat-ai==1.14.0`; nothing of Pipecat is imported, only the file is
read). The model takes Whisper log-mel features of 16 kHz audio, 8 s long (zero-padded in front,
or the last 8 s), computed here with numpy (no transformers, no torch), and returns a sigmoid
probability. An onnxruntime session is safe to `run` from several threads at once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MODEL_RATE_HZ = 16_000
WINDOW_S = 8
N_FFT = 400
HOP = 160
N_MELS = 80
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_NAME = "smart-turn-v3.2"
PIPECAT_VERSION = "1.14.0"  # the wheel the file comes from (installed with --no-deps by the set-up)


def smart_turn_onnx() -> str:
    """The ONNX file inside the installed `pipecat` package (found without importing it)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Smart Turn needs the pipecat-ai wheel: pip install --no-deps pipecat-ai=={PIPECAT_VERSION}")
    path = Path(next(iter(spec.submodule_search_locations))) / "audio" / "turn" / "smart_turn" / "data" / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {MODEL_FILE} in the installed pipecat package ({path})")
    return str(path)


def _mel_filters() -> np.ndarray:
    """Slaney-scale, area-normalized triangular filters, (N_MELS, N_FFT // 2 + 1), as Whisper uses."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return np.asarray(FeatureExtractor.get_mel_filters(MODEL_RATE_HZ, N_FFT, n_mels=N_MELS), dtype=np.float64)


_MELS = _mel_filters()
_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann


def last_window(audio_16k: np.ndarray, seconds: int = WINDOW_S) -> np.ndarray:
    """The last `seconds` of audio, zero-padded in front when shorter."""
    n = seconds * MODEL_RATE_HZ
    audio = np.asarray(audio_16k, dtype=np.float32)[-n:]
    return np.pad(audio, (n - len(audio), 0)) if len(audio) < n else audio


def log_mel(audio_16k: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features of an 8 s window, (80, 800) float32, after zero-mean unit-variance
    normalization of the waveform (what the model was trained on)."""
    x = last_window(audio_16k)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (frames, bins)
    spec = np.log10(np.maximum(_MELS @ power.T, 1e-10))[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32)


class SmartTurnModel:
    """Synchronous and thread-safe: `probability(audio_16k)` runs one inference in the calling thread."""

    name = MODEL_NAME

    def __init__(self, model_path: str = "", n_threads: int = 1, device: str = "cpu") -> None:
        import onnxruntime as ort

        from voice_pipeline.engines.onnx_device import onnx_providers

        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = max(1, n_threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.n_threads = max(1, n_threads)
        self._session = ort.InferenceSession(model_path or smart_turn_onnx(), sess_options=options,
                                             providers=onnx_providers(device))
        self._input = self._session.get_inputs()[0].name

    def probability(self, audio_16k: np.ndarray) -> float:
        features = log_mel(audio_16k)[None]
        (out,) = self._session.run(None, {self._input: features})[:1]
        return float(np.asarray(out).reshape(-1)[0])


class SmartTurnScorer:
    """The session's `AudioTurnScorer` over a `SmartTurnModel`: each call runs in a worker thread.

    The audio is copied before it crosses to the thread, and the model holds no per-call state,
    so a caller that is cancelled (or times out) leaves nothing behind but a result nobody reads.
    A call not yet started when its caller is cancelled never runs."""

    def __init__(self, model: SmartTurnModel, workers: int = 1) -> None:
        from voice_pipeline.threads import named_thread_pool

        self.model = model
        self.name = model.name
        self._executor = named_thread_pool(workers, "smart-turn")

    @classmethod
    def load(cls, model_path: str = "", n_threads: int = 2, device: str = "cpu") -> SmartTurnScorer:
        return cls(SmartTurnModel(model_path, n_threads=n_threads, device=device))

    async def complete_probability(self, audio_16k: np.ndarray) -> float:
        import asyncio

        audio = np.array(audio_16k[-WINDOW_S * MODEL_RATE_HZ :], dtype=np.float32, copy=True)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.model.probability, audio)

    def warm_up(self) -> float:
        """One inference on silence (the first run allocates); returns its score."""
        return self.model.probability(np.zeros(MODEL_RATE_HZ, dtype=np.float32))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
