"""Piper's sentences of several syntheses in one model call (engines/piper_batch.py)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest

from voice_pipeline.app.settings import TtsSettings
from voice_pipeline.engines.piper import PiperTts, load_voice, tts_batching
from voice_pipeline.engines.piper_batch import PiperBatcher, batched_piper_model
from voice_pipeline.engines.registry import piper_voice
from voice_pipeline.engines.vad import silero_model_path
from voice_pipeline.errors import ConfigError

SENTENCES = ["Paris is the capital of France,", "Hi!",
             "The moon is about three hundred eighty thousand kilometres away.",
             "Sure, I can help with that."]
NOISE_OFF = (0.0, 1.0, 0.0)


def test_a_batched_row_is_the_sentence_alone_cut_at_its_length():
    voice = load_voice("en_US-joe-medium", "cpu", threads=1)
    model, frames_output = batched_piper_model(piper_voice("en_US-joe-medium")[0])
    batched = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    batcher = PiperBatcher(batched, frames_output, hop_length=voice.config.hop_length, batch_max=8)
    rows = [voice.phonemes_to_ids(voice.phonemize(text)[0]) for text in SENTENCES]
    alone = [voice.session.run(None, {"input": np.array([ids]), "input_lengths": np.array([len(ids)]),
                                      "scales": np.array(NOISE_OFF, dtype=np.float32)})[0].reshape(-1)
             for ids in rows]
    together = batcher._call([SimpleNamespace(ids=ids, scales=NOISE_OFF, speaker=None) for ids in rows])
    batcher.close()
    assert batcher.calls == 1 and batcher.rows == len(rows)
    for audio_alone, audio_batched in zip(alone, together):
        assert len(audio_batched) == len(audio_alone)  # cut exactly where the sentence alone ends
        assert np.abs(audio_batched - audio_alone).max() < 1e-3
    assert len({len(audio) for audio in together}) == len(rows)  # not the padded length


def test_a_graph_without_the_duration_sum_is_refused():
    with pytest.raises(ValueError, match="Ceil"):
        batched_piper_model(silero_model_path())


class _BlockingSession:
    """A stand-in model: audio of `ids.sum()` per frame; the first call waits for `release`."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()  # a call is in run()
        self.calls: list[tuple[int, tuple]] = []  # (rows, scales) per call
        self.fail_next = False

    def get_outputs(self):
        return [SimpleNamespace(name="output")]

    def get_inputs(self):
        return [SimpleNamespace(name=name) for name in ("input", "input_lengths", "scales")]

    def run(self, outputs, feeds):
        assert outputs == ["output", "frames"]
        self.entered.set()
        self.release.wait(5)
        self.calls.append((len(feeds["input"]), tuple(feeds["scales"].tolist())))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("model failed")
        lengths = feeds["input_lengths"]
        audio = np.repeat(feeds["input"].sum(axis=1, keepdims=True).astype(np.float32), 2 * lengths.max(), axis=1)
        return audio.reshape(len(lengths), 1, 1, -1), lengths  # one frame per phoneme id


def _run_in_threads(batcher: PiperBatcher, rows: list, in_order: bool = False) -> tuple[list, list]:
    """Each row's `run` in its own thread; `in_order`: each row queued before the next one starts."""
    results: list[object] = [None] * len(rows)

    def one(index: int) -> None:
        try:
            results[index] = batcher.run(*rows[index])
        except Exception as exc:  # noqa: BLE001 - the test reads it
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for index, thread in enumerate(threads):
        thread.start()
        if in_order:
            _wait_queued(batcher, index + 1)
    return results, threads


def _wait_queued(batcher: PiperBatcher, count: int) -> None:
    for _ in range(500):
        with batcher._lock:
            if len(batcher._queued) >= count:
                return
        threading.Event().wait(0.01)
    raise AssertionError("rows never queued")


def test_sentences_queued_during_a_call_go_together_into_the_next_one_by_their_scales():
    session = _BlockingSession()
    batcher = PiperBatcher(session, "frames", hop_length=2, batch_max=3)
    first, first_threads = _run_in_threads(batcher, [([1, 1], NOISE_OFF)])
    assert session.entered.wait(5)  # the first call has taken its row and waits for `release`
    rows = [([2], NOISE_OFF), ([3, 3, 3], NOISE_OFF), ([4], (0.5, 1.0, 0.5)), ([5, 5], NOISE_OFF), ([6], NOISE_OFF)]
    results, threads = _run_in_threads(batcher, rows, in_order=True)
    session.release.set()
    for thread in first_threads + threads:
        thread.join(5)
    batcher.close()
    assert [rows for rows, _ in session.calls] == [1, 3, 1, 1]  # batch_max 3, then the odd scales, then the rest
    assert session.calls[2][1] == (0.5, 1.0, 0.5)
    assert first[0].tolist() == [2, 2, 2, 2]
    # each row's audio: its own value, as long as its own ids (2 samples per frame), not the batch's longest
    assert [r.tolist() for r in results] == [[2] * 2, [9] * 6, [4] * 2, [10] * 4, [6] * 2]


def test_a_failed_call_fails_its_rows_only_and_close_fails_what_is_queued():
    session = _BlockingSession()
    session.fail_next = True
    session.release.set()
    batcher = PiperBatcher(session, "frames", hop_length=1, batch_max=4)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.run([1], NOISE_OFF)
    assert batcher.run([7], NOISE_OFF).tolist() == [7]  # the batcher goes on
    batcher.close()
    with pytest.raises(Exception, match="closed"):
        batcher.run([1], NOISE_OFF)


def test_batching_is_on_with_cuda_only_unless_set():
    assert tts_batching(TtsSettings(device="cpu")) is False
    assert tts_batching(TtsSettings(device="cpu", batch="on")) is True
    with pytest.raises(ConfigError, match="tts.batch"):
        tts_batching(TtsSettings(batch="sometimes"))


def test_each_lane_batches_by_its_own_device(monkeypatch):
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    settings = TtsSettings(device="cpu", later_device="cuda")
    assert tts_batching(settings) is False and tts_batching(settings, settings.later_device) is True


def test_a_later_lane_on_a_device_this_onnxruntime_lacks_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA"):
        PiperTts(TtsSettings(device="cpu", later_device="cuda", workers=1), threads=1)


def test_a_batching_engine_speaks_every_piece_of_replies_at_once():
    tts = PiperTts(TtsSettings(batch="on", batch_max=4, workers=1), threads=1)
    assert tts.batched and len(tts._voice.resources) == 4  # a thread per row

    async def speak(text: str, urgent: bool) -> np.ndarray:
        return np.concatenate([chunk async for chunk in tts.synthesize(text, urgent=urgent)])

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(speak(text, i % 2 == 0) for i, text in enumerate(SENTENCES * 2)))

    audios = asyncio.run(main())
    urgent, later = tts.batchers  # one per lane
    assert urgent is not later and urgent.rows + later.rows == len(audios)
    assert urgent.calls < urgent.rows or later.calls < later.rows  # some sentences shared a call
    for text, audio in zip(SENTENCES * 2, audios):
        assert audio.dtype == np.float32 and np.abs(audio).max() == pytest.approx(1.0)  # normalized as piper does
        assert len(audio) > 0.04 * tts.sample_rate_hz * len(text.split())  # speech, not a fragment
