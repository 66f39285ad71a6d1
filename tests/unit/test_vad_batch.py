"""The batched Silero VAD: same probabilities as one SileroVad per stream, on real speech, whoever
joins, leaves, resets, fails or is cancelled; and a session on it ends cleanly."""

from __future__ import annotations

import asyncio
import gc
import threading

import numpy as np
import pytest

from voice_pipeline.app.settings import Settings
from voice_pipeline.audio import resample
from voice_pipeline.engines.vad import SileroVad, ThreadedVad, load_silero_session
from voice_pipeline.engines.vad_batch import BatchedVad, load_batched_session, vad_streams
from voice_pipeline.errors import EngineError
from voice_pipeline.metrics import PipelineMetrics
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.session.session import Session

from .fakes import RecordingSink, fake_engines, make_settings

TOLERANCE = 1e-4
SENTENCES = ("What is the capital of France?", "Set a timer for ten minutes, please.",
             "Tell me a joke.", "How far away is the moon?")


@pytest.fixture(scope="module")
def speech_16k() -> list[np.ndarray]:
    """Piper speech (the embedded voice), 16 kHz, each sentence with its own lead of silence."""
    from voice_pipeline.bench.corpus import clear_speech

    clips = []
    for lead_ms, text in zip((300, 170, 455, 20), SENTENCES):
        spoken, rate = clear_speech(text)
        audio = resample((spoken * 0.6).astype(np.float32), rate, 16_000)
        clips.append(np.concatenate([np.zeros(16 * lead_ms, np.float32), audio, np.zeros(4_800, np.float32)]))
    return clips


@pytest.fixture(scope="module")
def silero():
    return load_silero_session()


@pytest.fixture(scope="module")
def batched_model():
    return load_batched_session()


def reference(silero, audio: np.ndarray) -> list[float]:
    return SileroVad(silero).process(audio)


async def stream_through(stream, audio: np.ndarray, message_samples: int = 320) -> list[float]:
    out: list[float] = []
    for start in range(0, len(audio), message_samples):
        out += await stream.process(audio[start:start + message_samples])
    return out


def assert_close(got: list[float], expected: list[float]) -> None:
    assert len(got) == len(expected)
    assert np.max(np.abs(np.asarray(got) - np.asarray(expected))) <= TOLERANCE


@pytest.mark.parametrize("wait_ms", [32, 0])
async def test_batched_calls_give_each_stream_its_own_probabilities(speech_16k, silero, batched_model, wait_ms):
    batcher = BatchedVad(batched_model, wait_ms=wait_ms)
    try:
        streams = [batcher.stream() for _ in speech_16k]
        sizes = (320, 320, 1_600, 160)  # 20 ms messages; 100 ms ones (three windows a call); 10 ms
        got = await asyncio.gather(*(stream_through(s, a, n) for s, a, n in zip(streams, speech_16k, sizes)))
        for clip, probabilities in zip(speech_16k, got):
            expected = reference(silero, clip)
            assert_close(probabilities, expected)
            assert max(expected) > 0.9 and min(expected) < 0.1  # speech and silence, not a flat line
        assert batcher.windows == sum(len(p) for p in got)
        if wait_ms:
            assert batcher.calls < batcher.windows / 2  # the streams met in shared calls
    finally:
        batcher.close()


async def test_streams_join_and_leave_at_any_moment_without_mixing_or_leaking(speech_16k, silero, batched_model):
    batcher = BatchedVad(batched_model, wait_ms=32)
    try:
        first, second, third = speech_16k[:3]
        early = batcher.stream()
        half = await stream_through(early, first[:len(first) // 2])
        late = batcher.stream()  # joins mid-way through the first
        leaving = batcher.stream()
        assert batcher.open_streams == 3
        rest, joined, _ = await asyncio.gather(
            stream_through(early, first[len(first) // 2:]), stream_through(late, second),
            stream_through(leaving, third[:8_000]))
        leaving.close()  # hangs up; the others go on
        leaving.close()
        assert batcher.open_streams == 2
        with pytest.raises(EngineError):
            await leaving.process(third[8_000:])
        assert_close(half + rest, reference(silero, first))
        assert_close(joined, reference(silero, second))
        forgotten = batcher.stream()  # a stream nobody closes is held weakly: it goes with its owner
        await forgotten.process(first[:1_024])
        del forgotten
        gc.collect()
        assert batcher.open_streams == 2
        early.close()
        late.close()
        assert batcher.open_streams == 0
    finally:
        batcher.close()


async def test_reset_starts_one_stream_afresh_and_leaves_the_others(speech_16k, silero, batched_model):
    batcher = BatchedVad(batched_model, wait_ms=32)
    try:
        one, other = batcher.stream(), batcher.stream()
        a, b = speech_16k[0], speech_16k[1]
        cut = 16 * 640 + 100  # not on a window boundary: the pending samples go too
        before, other_first = await asyncio.gather(stream_through(one, a[:cut]), stream_through(other, b[:cut]))
        one.reset()
        after, other_rest = await asyncio.gather(stream_through(one, a[cut:]), stream_through(other, b[cut:]))
        assert_close(before, reference(silero, a[:cut]))
        assert_close(after, reference(silero, a[cut:]))
        assert_close(other_first + other_rest, reference(silero, b))
    finally:
        batcher.close()


class ScriptedModel:
    """The batched model, but a call can be held on an event or made to fail."""

    def __init__(self, model) -> None:
        self.model, self.failing = model, False
        self.entered, self.release = threading.Event(), threading.Event()
        self.release.set()

    def run(self, outputs, feeds):
        self.entered.set()
        self.release.wait(10)
        if self.failing:
            raise RuntimeError("onnxruntime gave up")
        return self.model.run(outputs, feeds)


async def test_a_failing_call_fails_the_streams_waiting_on_it_and_the_next_call_works(speech_16k, silero, batched_model):
    model = ScriptedModel(batched_model)
    batcher = BatchedVad(model, wait_ms=32)
    try:
        streams = [batcher.stream(), batcher.stream()]
        model.failing = True
        results = await asyncio.gather(*(s.process(speech_16k[0][:512]) for s in streams), return_exceptions=True)
        assert all(isinstance(r, EngineError) and r.stage == "vad" for r in results), results
        model.failing = False
        fresh = batcher.stream()
        assert_close(await stream_through(fresh, speech_16k[1]), reference(silero, speech_16k[1]))
    finally:
        batcher.close()


async def test_a_caller_cancelled_mid_call_keeps_its_stream_in_order(speech_16k, silero, batched_model):
    model = ScriptedModel(batched_model)
    batcher = BatchedVad(model, wait_ms=32)
    try:
        stream, clip = batcher.stream(), speech_16k[2]
        first = await stream_through(stream, clip[:16_000])
        model.entered.clear()
        model.release.clear()
        call = asyncio.create_task(stream.process(clip[16_000:17_600]))  # three windows, held in the model
        await asyncio.to_thread(model.entered.wait, 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        queued = asyncio.create_task(stream.process(clip[17_600:19_200]))  # queued behind the held call
        await asyncio.sleep(0.01)
        model.release.set()
        rest = await queued + await stream_through(stream, clip[19_200:])
        expected = reference(silero, clip)
        lost = len(reference(silero, clip[:17_600])) - len(first)  # the cancelled call's windows
        assert lost == 3
        assert_close(first + rest, expected[:len(first)] + expected[len(first) + lost:])
    finally:
        batcher.close()


async def test_a_stream_closed_while_its_call_is_running_leaves_nothing_behind(speech_16k, batched_model):
    model = ScriptedModel(batched_model)
    batcher = BatchedVad(model, wait_ms=32)
    try:
        staying, leaving = batcher.stream(), batcher.stream()
        model.release.clear()
        call = asyncio.create_task(leaving.process(speech_16k[0][:1_024]))
        await asyncio.to_thread(model.entered.wait, 10)
        call.cancel()
        leaving.close()  # the session ended: its host cancelled it, then closed its stream
        model.release.set()
        assert len(await staying.process(speech_16k[1][:1_024])) == 2
        assert batcher.open_streams == 1
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        batcher.close()


async def test_the_per_stream_path_gives_the_same_probabilities(speech_16k, silero):
    settings = Settings.load(environ={"VP_VAD_BATCH": "false"})
    assert Settings().vad.batch  # batched by default
    stream = vad_streams(settings.vad.batch, settings.vad.batch_wait_ms)()
    assert isinstance(stream, ThreadedVad)
    assert_close(await stream_through(stream, speech_16k[3]), reference(silero, speech_16k[3]))
    stream.close()


async def started_session(batcher: BatchedVad):
    """A session (fake engines but this VAD) running and started: (session, sink, its task)."""
    engines = fake_engines()
    engines.make_vad = batcher.stream
    sink = RecordingSink()
    session = Session("s1", make_settings(), engines, PipelineMetrics())
    task = asyncio.create_task(session.run(sink))
    await session.handle(cmd.StartSession({}))
    await sink.wait_for("session.created")
    return session, sink, task


async def test_a_session_on_the_batched_vad_hears_speech_and_closes_its_stream(speech_16k, batched_model):
    batcher = BatchedVad(batched_model, wait_ms=32)
    session, sink, task = await started_session(batcher)
    try:
        assert batcher.open_streams == 1
        for start in range(0, len(speech_16k[0]), 320):
            session.feed_samples(speech_16k[0][start:start + 320])
        await sink.wait_for("input_audio_buffer.speech_started")
        await sink.wait_for("input_audio_buffer.speech_stopped")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert batcher.open_streams == 0
    batcher.close()


async def test_a_session_whose_vad_call_fails_ends_as_it_did_before(speech_16k, batched_model):
    """Today a VAD that raises ends the session's task group (the host logs it and closes the
    session); the batched VAD does the same for the sessions in the failed call, and only them."""
    model = ScriptedModel(batched_model)
    batcher = BatchedVad(model, wait_ms=32)
    session, sink, task = await started_session(batcher)
    model.failing = True
    session.feed_samples(speech_16k[0][:1_024])
    with pytest.raises(ExceptionGroup) as failure:
        await asyncio.wait_for(task, 10)
    model.failing = False
    assert failure.group_contains(EngineError)
    assert batcher.open_streams == 0
    other = batcher.stream()  # the VAD thread serves the next session
    assert len(await other.process(speech_16k[1][:1_024])) == 2
    batcher.close()
