"""PCM16 conversions, WAV I/O and resampling (libsoxr through python-soxr), one-shot or streaming."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import soxr

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


class StreamingResampler:
    """One direction of one stream, resampled by libsoxr (python-soxr's `ResampleStream`, HQ).

    soxr compensates its own filter delay: output sample k is the signal at time k / to_hz, and a
    flushed stream yields exactly len(input) * to_hz / from_hz samples (rounded), so positions in
    ms mean the same on both sides. It does hold back a few tens of ms while streaming (its
    latency, see `held_ms`), released by later input or by `final=True`. Feeding a signal in
    pieces gives the same output as feeding it whole, within float32 rounding.
    """

    def __init__(self, from_hz: int, to_hz: int, quality: str = "HQ") -> None:
        self.from_hz, self.to_hz = from_hz, to_hz
        self.samples_in = 0  # since the last reset
        self.samples_out = 0
        self._stream = None if from_hz == to_hz else soxr.ResampleStream(from_hz, to_hz, 1, dtype="float32",
                                                                         quality=quality)

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    @property
    def held_ms(self) -> float:
        """Input received but not yet released as output (the resampler's current latency)."""
        return max(0.0, 1000.0 * (self.samples_in / self.from_hz - self.samples_out / self.to_hz))

    def process(self, audio: np.ndarray, final: bool = False) -> np.ndarray:
        """Resample the next piece of the stream; `final=True` flushes the tail and starts a new stream."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if self._stream is None:
            return audio
        out: np.ndarray = self._stream.resample_chunk(audio, last=final)
        self.samples_in += len(audio)
        self.samples_out += len(out)
        if final:
            self.reset()
        return out

    def flush(self) -> np.ndarray:
        """Everything still held (the stream's end); the next input starts a fresh stream."""
        return self.process(np.zeros(0, dtype=np.float32), final=True)

    def reset(self) -> None:
        """Drop what is held (barge-in) and start a fresh stream."""
        if self._stream is not None:
            self._stream.clear()
        self.samples_in = self.samples_out = 0


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample a whole signal (libsoxr, HQ)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if from_hz == to_hz:
        return audio
    return np.asarray(soxr.resample(audio, from_hz, to_hz, quality="HQ"), dtype=np.float32)
