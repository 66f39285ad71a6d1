"""Overload sheds the least valuable work first: partials, then speculative replies; the turn is still answered."""

import asyncio

import numpy as np

from voice_pipeline.session.load import StageLoad

from .fakes import fake_engines, make_settings, silence, speech
from .test_session import Harness


def shed(h: Harness, work: str) -> float:
    return h.metrics.shed.labels(work)._value.get()


async def long_turn(h: Harness) -> None:
    h.feed(silence(200))
    h.feed(speech(1500))  # long enough for partials (stt.partial_interval_ms)
    h.feed(silence(600))


async def test_without_load_partials_and_speculation_run():
    engines = fake_engines()
    engines.load = StageLoad(2, lambda: 0)
    settings = make_settings()
    async with Harness(engines, settings) as h:
        await long_turn(h)
        metrics = await h.sink.wait_for("turn.metrics")
    assert any(not final for final, _ in engines.stt.calls)
    assert metrics.data["speculation"] == "hit"
    assert shed(h, "partial") == 0 and shed(h, "speculation") == 0


async def test_a_stt_backlog_sheds_partials_and_speculation_but_the_turn_is_answered():
    engines = fake_engines()
    engines.load = StageLoad(2, lambda: 1)  # one pass waiting for a free STT worker
    async with Harness(engines, make_settings()) as h:
        await long_turn(h)
        metrics = await h.sink.wait_for("turn.metrics")
        done = h.sink.of("response.done")[0]
    assert [final for final, _ in engines.stt.calls] == [True]  # only the final pass ran
    assert "speculation" not in metrics.data and done.data["status"] == "completed"
    assert shed(h, "partial") >= 1 and shed(h, "speculation") == 1
    assert "conversation.item.input_audio_transcription.delta" not in h.sink.types()


async def test_full_llm_slots_shed_speculation_only():
    engines = fake_engines()
    load = StageLoad(1, lambda: 0)
    load.reply_started()  # another session's reply holds the only slot
    engines.load = load
    async with Harness(engines, make_settings()) as h:
        await long_turn(h)
        metrics = await h.sink.wait_for("turn.metrics")
    assert "speculation" not in metrics.data and shed(h, "speculation") == 1
    assert shed(h, "partial") == 0
    assert load.replies_running == 1  # this session's reply was counted while it ran, and released


async def test_the_stt_counts_passes_waiting_for_a_worker():
    from voice_pipeline.engines.whisper import WhisperStt

    stt = WhisperStt.__new__(WhisperStt)  # the counting only: no model
    import threading
    from concurrent.futures import ThreadPoolExecutor

    gate = threading.Event()
    stt._executor, stt._workers, stt._in_flight, stt._count_lock = ThreadPoolExecutor(1), 1, 0, threading.Lock()
    stt._transcribe_blocking = lambda audio, final: gate.wait(5)  # type: ignore[method-assign]
    tasks = [asyncio.create_task(stt.transcribe(np.zeros(160, np.float32), final=True)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert stt.waiting == 2
    tasks[2].cancel()  # cancelled before it started: no longer waiting
    await asyncio.sleep(0.05)
    assert stt.waiting == 1
    gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert stt.waiting == 0 and stt._in_flight == 0
    stt._executor.shutdown()
