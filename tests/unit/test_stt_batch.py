"""STT passes batched across sessions, with a fake model: what waits runs as one batch, finals
first; stale partials are superseded (never a final); cancelling and failing touch only their passes."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from voice_pipeline.engines.base import Transcript
from voice_pipeline.engines.stt_batch import QueuedPass, Superseded, SttBatcher, plan
from voice_pipeline.errors import EngineError
from voice_pipeline.session.transcription import TurnTranscriber

RNG = np.random.default_rng(7)
TIMEOUT_S = 10


def utterance(seconds: float = 3.0) -> np.ndarray:
    """One session's audio; its passes are slices from the start, as a turn's are."""
    return RNG.standard_normal(int(16_000 * seconds)).astype(np.float32)


class FakeModel:
    """Names each audio it decodes; the first batch can be held until the test releases it."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_with: str | None = None

    def audio(self, name: str, samples: np.ndarray) -> np.ndarray:
        self.names[id(samples)] = name
        return samples

    def decode(self, audios: list[np.ndarray]) -> list[str]:
        names = [self.names[id(a)] for a in audios]
        self.batches.append(names)
        self.started.set()
        assert self.release.wait(TIMEOUT_S)
        if self.fail_with in names:
            raise RuntimeError("the model failed")
        return [f"heard {name}" for name in names]


def busy(model: FakeModel, batcher: SttBatcher) -> Future[Transcript]:
    """Occupy the only runner with a first pass, so that what is submitted next has to wait."""
    model.release.clear()
    blocker = batcher.submit(model.audio("blocker", utterance(1.0)), final=True)
    assert model.started.wait(TIMEOUT_S)
    return blocker


def test_passes_submitted_while_busy_run_as_one_batch_finals_first():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=8)
    busy(model, batcher)
    jobs = {
        "x.partial": batcher.submit(model.audio("x.partial", utterance()), final=False),
        "y.final": batcher.submit(model.audio("y.final", utterance()), final=True),
        "z.partial": batcher.submit(model.audio("z.partial", utterance()), final=False),
        "w.final": batcher.submit(model.audio("w.final", utterance()), final=True),
    }
    assert batcher.waiting == 0  # all four fit in the next batch: no partial needs shedding
    model.release.set()
    results = {name: job.result(TIMEOUT_S) for name, job in jobs.items()}
    assert model.batches == [["blocker"], ["y.final", "w.final", "x.partial", "z.partial"]]
    assert results["y.final"] == Transcript("heard y.final", True, 3000.0)
    assert results["x.partial"] == Transcript("heard x.partial", False, 3000.0)
    assert (batcher.batches, batcher.passes) == (2, 5)


def test_a_batch_never_leaves_a_final_waiting_behind_partials():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=2)
    busy(model, batcher)
    jobs = [batcher.submit(model.audio(name, utterance()), final=name.endswith("final"))
            for name in ("x.partial", "z.partial", "y.final", "w.final", "v.final")]
    assert batcher.waiting == 3
    model.release.set()
    for job in jobs:
        job.result(TIMEOUT_S)
    assert model.batches[1:] == [["y.final", "w.final"], ["v.final", "x.partial"], ["z.partial"]]


def test_with_no_room_anything_waiting_is_a_backlog_and_still_runs_as_one_batch():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=8, room=0)  # the CPU's setting: each pass costs
    busy(model, batcher)
    jobs = [batcher.submit(model.audio(name, utterance()), final=True) for name in ("x.final", "y.final")]
    assert batcher.waiting == 2  # new partials are shed (session/load.py)...
    model.release.set()
    for job in jobs:
        job.result(TIMEOUT_S)
    assert model.batches[1:] == [["x.final", "y.final"]]  # ...and what waited still shares one call
    assert batcher.waiting == 0


def test_over_batch_max_stale_partials_are_superseded_and_finals_all_run():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=2)
    busy(model, batcher)
    a, b, c = utterance(), utterance(), utterance()
    jobs = {
        "a.partial1": batcher.submit(model.audio("a.partial1", a[:16_000]), final=False),
        "b.partial": batcher.submit(model.audio("b.partial", b[:16_000]), final=False),
        "a.partial2": batcher.submit(model.audio("a.partial2", a[:24_000]), final=False),
        "a.final": batcher.submit(model.audio("a.final", a[:40_000]), final=True),
        "c.final": batcher.submit(model.audio("c.final", c[:20_000]), final=True),
    }
    model.release.set()
    results = {name: job.result(TIMEOUT_S) for name, job in jobs.items()}
    for name in ("a.partial1", "a.partial2"):  # a's final covers both: they never reach the model
        assert isinstance(results[name], Superseded)
        assert results[name].text == "" and not results[name].final
    assert model.batches[1:] == [["a.final", "c.final"], ["b.partial"]]  # b's partial is not a's
    assert results["a.final"].text == "heard a.final" and results["b.partial"].text == "heard b.partial"
    assert batcher.superseded == 2


def test_stale_partials_still_run_while_the_batch_has_room():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=4)
    busy(model, batcher)
    a = utterance()
    partial = batcher.submit(model.audio("a.partial", a[:16_000]), final=False)
    final = batcher.submit(model.audio("a.final", a[:32_000]), final=True)
    model.release.set()
    assert partial.result(TIMEOUT_S).text == "heard a.partial" and final.result(TIMEOUT_S).final
    assert batcher.superseded == 0


def test_only_partials_are_judged_stale_and_only_by_a_newer_pass_of_the_same_audio():
    a, b = utterance(), utterance()

    def queued(seq: int, samples: np.ndarray, final: bool) -> QueuedPass:
        return QueuedPass(samples, final, seq, future=None)  # type: ignore[arg-type]

    old_final = queued(0, a[:16_000], True)
    newer_partial = queued(1, a[:24_000], False)  # covers the older final: the final still runs
    older_than_it = queued(2, a[:20_000], False)  # shorter, submitted later than it: not covered by it...
    newest = queued(3, a[:32_000], False)  # ...except this one, which covers all the others
    other = queued(4, b[:32_000], False)  # another session's audio covers none of a's
    result = plan([old_final, newer_partial, older_than_it, newest, other], batch_max=2)
    assert result.superseded == [newer_partial, older_than_it]
    assert result.batch == [old_final, newest] and result.left == [other]
    assert plan([old_final, newer_partial], batch_max=2).superseded == []  # within batch_max: nothing dropped


async def test_cancelling_a_waiting_pass_removes_it_from_the_queue():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=1)
    blocker = busy(model, batcher)
    waiting = asyncio.create_task(batcher.transcribe(model.audio("x.partial", utterance()), final=False))
    kept = asyncio.create_task(batcher.transcribe(model.audio("y.final", utterance()), final=True))
    for _ in range(3):
        await asyncio.sleep(0)
    assert batcher.waiting == 1  # two due, one fits the next batch
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert batcher.waiting == 0
    model.release.set()
    assert (await asyncio.wait_for(kept, TIMEOUT_S)).text == "heard y.final"
    assert blocker.result(TIMEOUT_S).text == "heard blocker"
    assert model.batches == [["blocker"], ["y.final"]]


async def test_cancelling_a_running_pass_lets_its_batch_finish():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=4)
    model.release.clear()
    running = asyncio.create_task(batcher.transcribe(model.audio("x.final", utterance()), final=True))
    assert await asyncio.to_thread(model.started.wait, TIMEOUT_S)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    model.release.set()  # the thread inside the model call returns; the next pass runs as usual
    after = await asyncio.wait_for(batcher.transcribe(model.audio("y.final", utterance()), final=True), TIMEOUT_S)
    assert after.text == "heard y.final" and model.batches == [["x.final"], ["y.final"]]


def test_a_failing_batch_fails_only_its_own_passes():
    model = FakeModel()
    batcher = SttBatcher(model.decode, batch_max=2)
    busy(model, batcher)
    model.fail_with = "bad.final"
    bad = batcher.submit(model.audio("bad.final", utterance()), final=True)
    beside = batcher.submit(model.audio("beside.final", utterance()), final=True)
    later = batcher.submit(model.audio("later.final", utterance()), final=True)
    model.release.set()
    for job in (bad, beside):
        with pytest.raises(EngineError) as failed:
            job.result(TIMEOUT_S)
        assert failed.value.stage == "stt" and "the model failed" in str(failed.value)
    assert later.result(TIMEOUT_S).text == "heard later.final"
    assert model.batches[1:] == [["bad.final", "beside.final"], ["later.final"]]


def test_a_decode_that_loses_a_transcript_is_an_engine_error():
    batcher = SttBatcher(lambda audios: ["only one"], batch_max=4)
    first = batcher.submit(utterance(1.0), final=True, start=False)
    second = batcher.submit(utterance(1.0), final=True)
    for job in (first, second):
        with pytest.raises(EngineError):
            job.result(TIMEOUT_S)


async def test_a_superseded_partial_is_ignored_by_the_turn():
    class SupersedingStt:
        name = "superseding"

        async def transcribe(self, audio: np.ndarray, *, final: bool) -> Transcript:
            if final:
                return Transcript("the final words", True, len(audio) / 16)
            return Superseded("", False, len(audio) / 16)

        async def warm_up(self) -> None:
            pass

    partials: list[str] = []
    spawn = asyncio.get_running_loop().create_task
    turn = TurnTranscriber(SupersedingStt(), lambda start, end: np.zeros(int(16 * (end - start)), np.float32),
                           0.0, spawn, 500, partials.append)
    turn.maybe_partial(600)
    for _ in range(5):
        await asyncio.sleep(0)
    assert partials == []  # no words, no partial event; the turn goes on
    assert (await turn.final(900, 1000)).text == "the final words"
