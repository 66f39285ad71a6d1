"""A question spoken by Piper (the `piper_say` fixture) as 16 kHz float32 audio, for STT tests."""

import numpy as np

from voice_pipeline.audio import read_wav, resample


def spoken(piper_say, text: str) -> np.ndarray:
    audio, rate = read_wav(piper_say(text, lead_s=0.3, tail_s=0.1))
    return resample(audio, rate, 16_000)
