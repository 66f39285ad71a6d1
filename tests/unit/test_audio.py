"""PCM conversions, WAV I/O and the streaming resampler."""

import numpy as np
import pytest

from voice_pipeline.audio import StreamingResampler, float_to_pcm16, pcm16_to_float, read_wav, resample, write_wav
from voice_pipeline.session.audio_history import AudioHistory
from voice_pipeline.session.bounded import DropOldestQueue


def sine(hz, rate, seconds=0.5, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


@pytest.mark.parametrize("src, dst", [(8000, 16000), (16000, 8000), (22050, 16000), (44100, 16000), (16000, 48000), (22050, 8000)])
def test_streaming_in_random_pieces_equals_one_shot(src, dst):
    signal = sine(440, src)
    whole = resample(signal, src, dst)
    resampler, parts, i = StreamingResampler(src, dst), [], 0
    rng = np.random.default_rng(1)
    while i < len(signal):
        n = int(rng.integers(1, 700))
        parts.append(resampler.process(signal[i : i + n]))
        i += n
    parts.append(resampler.process(np.zeros(0, np.float32), final=True))
    assert np.array_equal(np.concatenate(parts), whole)
    assert len(whole) == len(signal) * dst // src


@pytest.mark.parametrize("src, dst", [(22050, 16000), (8000, 16000), (48000, 8000)])
def test_resampled_tone_keeps_frequency_and_level(src, dst):
    out = resample(sine(440, src, seconds=1.0), src, dst)
    middle = out[dst // 4 : 3 * dst // 4]
    expected = sine(440, dst, seconds=1.0)[dst // 4 : 3 * dst // 4]
    assert np.max(np.abs(middle - expected)) < 1e-3


def test_downsampling_removes_what_the_new_rate_cannot_hold():
    out = resample(sine(6000, 22050, seconds=1.0), 22050, 8000)  # above 4 kHz Nyquist
    assert np.sqrt(np.mean(out[2000:-2000] ** 2)) < 0.01


def test_pcm16_round_trip_and_clipping():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 0.9999, 1.5], dtype=np.float32)
    y = pcm16_to_float(float_to_pcm16(x))
    assert np.allclose(y[:5], x[:5], atol=1 / 32768)
    assert y[5] == pytest.approx(32767 / 32768)


def test_wav_round_trip(tmp_path):
    x = sine(300, 22050)
    write_wav(tmp_path / "a.wav", x, 22050)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050 and np.allclose(x, y, atol=1 / 32768)


def test_audio_history_slices_by_position_and_forgets_old_audio():
    history = AudioHistory(max_seconds=1.0)
    for k in range(30):  # 3 s of 100 ms chunks whose value is their index
        history.append(np.full(1600, k, dtype=np.float32))
    assert history.end_ms == 3000.0
    assert np.all(history.slice_ms(2500, 2600) == 25)
    assert len(history.slice_ms(0, 3000)) <= 16000 + 1600  # old audio was dropped
    assert len(history.slice_ms(2900, 5000)) == 1600


async def test_drop_oldest_queue():
    queue = DropOldestQueue(2)
    assert queue.put(1) and queue.put(2)
    assert not queue.put(3)
    assert queue.dropped == 1
    assert await queue.get() == 2 and await queue.get() == 3
    assert await queue.get(timeout_s=0.01) is None


async def test_drop_oldest_queue_get_never_swallows_a_cancellation():
    """An item arriving in the same tick as the cancel must not eat it (the session would hang)."""
    import asyncio

    queue = DropOldestQueue(4)
    getter = asyncio.create_task(queue.get(timeout_s=10.0))  # a turn is open: the idle timeout runs
    await asyncio.sleep(0)  # the getter now waits
    queue.put(1)
    getter.cancel()
    await asyncio.wait([getter], timeout=1.0)
    assert getter.done() and getter.cancelled()
