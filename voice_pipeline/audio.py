"""PCM16 conversions, WAV I/O and a streaming polyphase resampler (numpy only)."""

from __future__ import annotations

import io
import wave
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

PIPELINE_RATE_HZ = 16_000
SUPPORTED_RATES_HZ = (8_000, 16_000, 22_050, 24_000, 44_100, 48_000)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM bytes -> float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] -> little-endian signed 16-bit PCM bytes (clipped)."""
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 32767.0 / 32768.0)
    return (clipped * 32768.0).astype("<i2").tobytes()


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file (8/16/24/32-bit, any channels) as mono float32 and its rate."""
    with wave.open(str(path), "rb") as wav:
        rate_hz, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        raw = wav.readframes(wav.getnframes())
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise ValueError(f"unsupported WAV sample width: {width} bytes")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples.astype(np.float32), rate_hz


def write_wav(path: str | Path, audio: np.ndarray, rate_hz: int) -> None:
    Path(path).write_bytes(wav_bytes(audio, rate_hz))


def wav_bytes(audio: np.ndarray, rate_hz: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(float_to_pcm16(audio))
    return buffer.getvalue()


@lru_cache(maxsize=32)
def _lowpass_taps(up: int, down: int, taps_per_phase: int = 24) -> np.ndarray:
    """Kaiser-windowed sinc low-pass for rational resampling by up/down (gain `up`)."""
    cutoff = 0.5 / max(up, down)  # in cycles per sample at the upsampled rate
    half = taps_per_phase * max(up, down) // 2
    n = np.arange(-half, half + 1, dtype=np.float64)
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(len(n), 8.0)
    return taps * up / taps.sum()


class StreamingResampler:
    """Rational polyphase resampler that keeps its history across calls.

    The filter is centred on each output sample, so there is no delay to compensate: an output
    sample is emitted as soon as every input sample it needs has arrived. Feeding a signal in
    pieces gives exactly the same output as feeding it whole.
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        ratio = Fraction(to_hz, from_hz)
        self.from_hz, self.to_hz = from_hz, to_hz
        self.up, self.down = ratio.numerator, ratio.denominator
        self._taps = _lowpass_taps(self.up, self.down)
        self._half = (len(self._taps) - 1) // 2
        self._history = np.zeros(0, dtype=np.float64)  # input samples still needed
        self._history_start = 0  # absolute index of _history[0]
        self._next_out = 0  # absolute index (at the output rate) of the next output sample

    @property
    def passthrough(self) -> bool:
        return self.up == self.down

    def process(self, audio: np.ndarray, final: bool = False) -> np.ndarray:
        """Resample the next piece of the stream; `final=True` flushes the filter's tail."""
        audio = np.asarray(audio, dtype=np.float32)
        if self.passthrough:
            return audio
        buf = np.concatenate([self._history, audio.astype(np.float64)])
        end_in = self._history_start + len(buf)  # absolute index one past the last input sample
        if final:
            buf = np.concatenate([buf, np.zeros(self._half // self.up + 2)])
        out = self._render(buf, end_in, final)
        keep_from = max(0, (self._next_out * self.down - self._half) // self.up - self._history_start - 1)
        self._history = buf[keep_from:] if not final else np.zeros(0)
        self._history_start += keep_from
        return out.astype(np.float32)

    def _render(self, buf: np.ndarray, end_in: int, final: bool) -> np.ndarray:
        up, down, taps, half = self.up, self.down, self._taps, self._half
        # Output sample k sits at upsampled position k*down; it needs inputs up to (k*down+half)/up.
        limit_up = end_in * up if final else end_in * up - half
        last_k = (limit_up - 1) // down if limit_up > 0 else -1
        ks = np.arange(self._next_out, last_k + 1)
        if len(ks) == 0:
            return np.zeros(0)
        pos = ks * down  # position of each output in the upsampled grid
        first_in = -(-(pos - half) // up)  # ceil
        n_taps = half * 2 // up + 2
        idx = first_in[:, None] + np.arange(n_taps)[None, :]  # input indices
        tap_idx = idx * up - pos[:, None] + half
        valid = (tap_idx >= 0) & (tap_idx < len(taps)) & (idx >= self._history_start)
        rel = np.clip(idx - self._history_start, 0, len(buf) - 1)
        values = np.where(valid, buf[rel], 0.0) * np.where(valid, taps[np.clip(tap_idx, 0, len(taps) - 1)], 0.0)
        self._next_out = int(ks[-1]) + 1
        return values.sum(axis=1)


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample a whole signal (one-shot form of StreamingResampler)."""
    if from_hz == to_hz:
        return np.asarray(audio, dtype=np.float32)
    return StreamingResampler(from_hz, to_hz).process(audio, final=True)
