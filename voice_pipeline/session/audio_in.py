"""A session's input audio on its way in: the queued frame, and its two conversions to 16 kHz."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voice_pipeline.audio import PIPELINE_RATE_HZ, StreamingResampler


@dataclass
class InputFrame:
    samples: np.ndarray  # float32 at the session's input rate
    t: float  # arrival, monotonic
    final: bool = False  # the input paused: flush what the resampler still holds


def input_resamplers(input_rate_hz: int) -> tuple[StreamingResampler, StreamingResampler]:
    """The input's two conversions to 16 kHz: high quality for the transcriber (soxr HQ holds back
    20-60 ms while streaming, which costs nothing there: the final pass starts at a pause) and
    soxr's quick one for the VAD, which holds back under 1 ms, so the endpoint is not late."""
    return StreamingResampler(input_rate_hz, PIPELINE_RATE_HZ), StreamingResampler(input_rate_hz, PIPELINE_RATE_HZ, "QQ")
