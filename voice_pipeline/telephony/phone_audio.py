"""Phone audio in both directions: 8 kHz mu-law <-> float32 at the pipeline's rates, in 20 ms frames.

Shared by the media-stream and the SIP/RTP transports. Each direction of a call keeps one libsoxr
stream (audio.StreamingResampler), so 20 ms pieces join without clicks; a reply flushes it at its end.
"""

from __future__ import annotations

import numpy as np

from voice_pipeline.audio import PIPELINE_RATE_HZ, StreamingResampler
from voice_pipeline.telephony.mulaw import MULAW_SILENCE, float_to_mulaw, mulaw_to_float

PHONE_RATE_HZ = 8_000
FRAME_MS = 20
FRAME_SAMPLES = PHONE_RATE_HZ * FRAME_MS // 1000  # 160 mu-law bytes per 20 ms frame


def mulaw_duration_ms(audio_mulaw: bytes) -> float:
    return len(audio_mulaw) * 1000.0 / PHONE_RATE_HZ


class PhoneAudioIn:
    """The caller's audio: mu-law bytes at 8 kHz -> float32 at the pipeline rate (16 kHz)."""

    def __init__(self, to_hz: int = PIPELINE_RATE_HZ) -> None:
        self.to_hz = to_hz
        self._resampler = StreamingResampler(PHONE_RATE_HZ, to_hz)

    def decode(self, audio_mulaw: bytes) -> np.ndarray:
        return self._resampler.process(mulaw_to_float(audio_mulaw))


class PhoneAudioOut:
    """Reply audio: float32 at the TTS rate -> whole 20 ms mu-law frames at 8 kHz.

    `encode` returns only whole frames and keeps the remainder; `finish` ends a reply (flushes the
    filter and pads the last frame with silence); `reset` drops everything (barge-in).
    """

    def __init__(self, from_hz: int, frame_samples: int = FRAME_SAMPLES) -> None:
        self.from_hz = from_hz
        self.frame_samples = frame_samples
        self._resampler = StreamingResampler(from_hz, PHONE_RATE_HZ)
        self._pending = np.zeros(0, dtype=np.float32)

    def encode(self, audio: np.ndarray) -> list[bytes]:
        self._pending = np.concatenate([self._pending, self._resampler.process(audio)])
        return self._cut_frames()

    def finish(self) -> list[bytes]:
        self._pending = np.concatenate([self._pending, self._resampler.flush()])
        frames = self._cut_frames()
        if len(self._pending):
            last = float_to_mulaw(self._pending)
            frames.append(last + bytes([MULAW_SILENCE]) * (self.frame_samples - len(last)))
        self.reset()
        return frames

    def reset(self) -> None:
        self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.float32)

    def _cut_frames(self) -> list[bytes]:
        n_frames = len(self._pending) // self.frame_samples
        cut = n_frames * self.frame_samples
        data = float_to_mulaw(self._pending[:cut])
        self._pending = self._pending[cut:]
        return [data[i * self.frame_samples : (i + 1) * self.frame_samples] for i in range(n_frames)]
