"""libsoxr resampling: alias rejection, chunked == one-shot, and positions kept across its delay."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from voice_pipeline.audio import SUPPORTED_RATES_HZ, StreamingResampler, resample
from voice_pipeline.metrics import TurnTimeline
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.reply.speaking import Reply, ReplyRecord
from voice_pipeline.telephony.phone_audio import PhoneAudioOut
from voice_pipeline.telephony.mulaw import mulaw_to_float

from .test_session import Harness
from .fakes import SPEECH_AMPLITUDE, FakeVad, fake_engines


def _tone(hz: float, rate_hz: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(rate_hz * seconds)) / rate_hz)).astype(np.float32)


def _rms_db(audio: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)


def _streamed(audio: np.ndarray, from_hz: int, to_hz: int, piece: int) -> np.ndarray:
    resampler = StreamingResampler(from_hz, to_hz)
    parts = [resampler.process(audio[i : i + piece]) for i in range(0, len(audio), piece)]
    return np.concatenate([*parts, resampler.flush()])


def test_a_tone_above_the_phone_band_does_not_fold_into_it() -> None:
    """Piper's 22.05 kHz -> 8 kHz: 4.4 kHz would alias to 3.6 kHz; it must be >= 60 dB down."""
    tone = _tone(4400, 22_050, 1.0)
    out = _streamed(tone, 22_050, 8_000, piece=441)  # 20 ms TTS pieces
    middle = out[800:-800]  # away from the start and end transients
    assert _rms_db(middle) - _rms_db(tone) <= -60.0
    # ... while a tone inside the band passes at its level (the filter is not simply muting)
    kept = _streamed(_tone(3000, 22_050, 1.0), 22_050, 8_000, piece=441)[800:-800]
    assert abs(_rms_db(kept) - _rms_db(tone)) < 0.5


@pytest.mark.parametrize("from_hz, to_hz", [pair for pair in itertools.permutations(SUPPORTED_RATES_HZ, 2)])
def test_streaming_in_random_pieces_equals_one_shot(from_hz: int, to_hz: int) -> None:
    signal = _tone(440, from_hz, 0.5) + _tone(1900, from_hz, 0.5, 0.2)
    whole = resample(signal, from_hz, to_hz)
    resampler, parts, i = StreamingResampler(from_hz, to_hz), [], 0
    rng = np.random.default_rng(1)
    while i < len(signal):
        n = int(rng.integers(1, 900))
        parts.append(resampler.process(signal[i : i + n]))
        i += n
    parts.append(resampler.flush())
    streamed = np.concatenate(parts)
    assert len(streamed) == len(whole) == round(len(signal) * to_hz / from_hz)
    assert np.max(np.abs(streamed - whole)) < 1e-4


@pytest.mark.parametrize("from_hz, to_hz", [(22_050, 8_000), (8_000, 16_000), (24_000, 16_000), (48_000, 16_000),
                                            (22_050, 24_000)])
def test_a_click_comes_out_at_the_same_time_it_went_in(from_hz: int, to_hz: int) -> None:
    """soxr compensates its filter delay: output sample k is time k / to_hz, however it is fed."""
    signal = np.zeros(from_hz, dtype=np.float32)
    at_s = 0.3137
    signal[int(at_s * from_hz)] = 1.0
    out = _streamed(signal, from_hz, to_hz, piece=from_hz // 50)
    assert abs(np.argmax(np.abs(out)) / to_hz - at_s) < 1.5 / min(from_hz, to_hz)


def test_held_back_audio_is_counted_and_released_by_a_flush() -> None:
    resampler = StreamingResampler(8_000, 16_000)
    out = resampler.process(_tone(300, 8_000, 0.2))
    assert resampler.held_ms > 0  # libsoxr's latency: part of the input is still inside
    assert resampler.held_ms == pytest.approx(200.0 - 1000.0 * len(out) / 16_000)
    tail = resampler.flush()
    assert len(out) + len(tail) == 3_200 and resampler.held_ms == 0.0
    assert len(resampler.process(_tone(300, 8_000, 0.2), final=True)) == 3_200  # a fresh stream after the flush
    assert StreamingResampler(16_000, 16_000).passthrough


def test_reset_drops_what_is_held() -> None:
    resampler = StreamingResampler(22_050, 8_000)
    resampler.process(_tone(300, 22_050, 0.1))
    resampler.reset()
    assert resampler.held_ms == 0.0 and len(resampler.flush()) == 0


def test_phone_frames_keep_positions_across_the_delay() -> None:
    """A reply's audio cut into 20 ms mu-law frames: a click at 730 ms is in the frame for 720-740 ms."""
    audio = np.zeros(22_050, dtype=np.float32)
    audio[int(0.73 * 22_050)] = 0.9
    out = PhoneAudioOut(from_hz=22_050)
    frames = [frame for i in range(0, len(audio), 1_000) for frame in out.encode(audio[i : i + 1_000])]
    frames += out.finish()
    assert len(frames) == 50
    loudest = int(np.argmax([np.max(np.abs(mulaw_to_float(frame))) for frame in frames]))
    assert loudest == 36  # 720-740 ms


class _Outbox:
    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []

    async def add_audio(self, _response_id: str, samples: np.ndarray) -> None:
        self.audio.append(samples)


class _BurstTts:
    """Each piece: 60 ms of silence, then a 1 kHz tone (100 ms a word), in two uneven chunks."""

    name = "burst-tts"
    sample_rate_hz = 22_050

    async def synthesize(self, text: str, *, urgent: bool = False, first: bool = False):
        tone = _tone(1000, self.sample_rate_hz, 0.1 * len(text.split()), 0.3)
        audio = np.concatenate([np.zeros(int(0.06 * self.sample_rate_hz), np.float32), tone])
        cut = len(audio) // 3
        yield audio[:cut]
        yield audio[cut:]


async def test_piece_positions_in_reply_audio_match_what_was_played() -> None:
    """What the line played (ms) must map to the words of the right piece, whatever soxr held back."""
    outbox = _Outbox()
    record = ReplyRecord("r1")
    reply = Reply(record, TurnTimeline(), session_id="s1", turn_id="t1", tts=_BurstTts(),  # type: ignore[arg-type]
                  outbox=outbox, output_rate_hz=8_000, emit=lambda _event: None)  # type: ignore[arg-type]
    await reply.speak_text("One two three. Four five six seven eight nine ten eleven twelve. Thirteen fourteen.")
    audio = np.concatenate(outbox.audio)
    assert len(record.pieces) == 3
    total_ms = sum(piece.audio_ms for piece in record.pieces)
    assert abs(total_ms - 1000.0 * len(audio) / 8_000) < 0.5
    start_ms = 0.0
    for piece in record.pieces:
        loud = np.abs(audio) > 0.05
        onset = int(np.argmax(loud[int(start_ms * 8):])) + int(start_ms * 8)  # first loud sample of this piece
        assert abs(onset / 8.0 - (start_ms + 60.0)) < 3.0
        start_ms += piece.audio_ms
    first_ms = record.pieces[0].audio_ms
    assert record.played_text(first_ms) == record.pieces[0].text
    assert record.played_text(first_ms + 1.0).startswith(record.pieces[0].text)


async def test_a_24khz_turn_reaches_the_history_whole_when_the_client_stops_sending() -> None:
    """The resampler's held tail is flushed when the input pauses, so the turn's last ms are not lost."""
    async with Harness() as h:
        await h.session.handle(cmd.UpdateSession({"input_audio_format": {"encoding": "pcm16", "sample_rate": 24_000}}))
        await h.sink.wait_for("session.updated")
        audio = np.concatenate([np.zeros(4_800, np.float32), np.full(24 * 640, SPEECH_AMPLITUDE, np.float32),
                                np.zeros(2_400, np.float32)])  # 200 + 640 + 100 ms, then nothing more
        for i in range(0, len(audio), 480):
            h.session.feed_samples(audio[i : i + 480])
        await h.sink.wait_for("input_audio_buffer.speech_stopped")
        await asyncio.sleep(0)
        assert h.session._history_audio.end_ms == pytest.approx(940.0, abs=0.1)


async def test_the_vad_sees_8khz_phone_audio_without_the_transcriber_resamplers_delay() -> None:
    """soxr HQ holds back tens of ms while streaming; the VAD's own quick resampler must not, or
    every phone endpoint would come that much later."""
    seen: list[int] = []

    class CountingVad(FakeVad):
        async def process(self, audio: np.ndarray) -> list[float]:
            seen.append(len(audio))
            return await super().process(audio)

    engines = fake_engines()
    engines.make_vad = CountingVad
    async with Harness(engines) as h:
        await h.session.handle(cmd.UpdateSession({"input_audio_format": {"encoding": "pcm16", "sample_rate": 8_000}}))
        await h.sink.wait_for("session.updated")
        for _ in range(50):  # 1 s in 20 ms phone frames, and the input goes on (no pause to flush at)
            h.session.feed_samples(np.zeros(160, np.float32))
        for _ in range(500):  # the VAD runs in a worker thread
            if len(seen) == 50:
                break
            await asyncio.sleep(0.01)
        assert len(seen) == 50
        assert sum(seen) >= 16 * (1000 - 2)  # all but ~1 ms of the second reached the VAD
        assert h.session._resampler.held_ms > 10  # while the transcriber's HQ stream still holds some back
