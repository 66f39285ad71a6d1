"""8 kHz mu-law <-> pipeline rates, in whole 20 ms frames."""

from __future__ import annotations

import numpy as np

from voice_pipeline.telephony.mulaw import float_to_mulaw, mulaw_to_float
from voice_pipeline.telephony.phone_audio import FRAME_SAMPLES, PhoneAudioIn, PhoneAudioOut, mulaw_duration_ms


def _tone(freq_hz: float, rate_hz: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _dominant_hz(audio: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate_hz)[np.argmax(spectrum)])


def test_inbound_frames_become_16k_audio_of_the_same_tone() -> None:
    phone = float_to_mulaw(_tone(440.0, 8000, 1.0))
    audio_in = PhoneAudioIn()
    pieces = [audio_in.decode(phone[i : i + FRAME_SAMPLES]) for i in range(0, len(phone), FRAME_SAMPLES)]
    audio = np.concatenate(pieces)
    assert audio.dtype == np.float32
    assert 14_000 < len(audio) <= 16_000  # libsoxr holds back tens of ms until more arrives
    assert abs(_dominant_hz(audio[1000:], 16_000) - 440.0) < 5.0


def test_outbound_audio_comes_out_in_whole_20ms_frames() -> None:
    out = PhoneAudioOut(from_hz=22_050)
    tone = _tone(440.0, 22_050, 0.5)
    frames = []
    for start in range(0, len(tone), 1000):  # uneven TTS pieces
        frames += out.encode(tone[start : start + 1000])
    frames += out.finish()
    assert all(len(frame) == FRAME_SAMPLES for frame in frames)
    assert len(frames) == 25  # 0.5 s in 20 ms frames, the last one padded
    assert mulaw_duration_ms(b"".join(frames)) == 500.0
    audio = mulaw_to_float(b"".join(frames))
    assert abs(_dominant_hz(audio, 8000) - 440.0) < 5.0


def test_finish_pads_the_last_frame_with_silence_and_starts_a_fresh_reply() -> None:
    out = PhoneAudioOut(from_hz=8_000)
    assert out.encode(np.full(100, 0.5, dtype=np.float32)) == []
    frames = out.finish()
    assert len(frames) == 1 and frames[0][100:] == b"\xff" * 60
    assert out.finish() == []


def test_reset_drops_unsent_audio() -> None:
    out = PhoneAudioOut(from_hz=16_000)
    out.encode(np.full(300, 0.5, dtype=np.float32))  # 150 samples at 8 kHz: no whole frame yet
    out.reset()
    assert out.finish() == []
