"""A reply's tokens after its first speakable piece come from lower-priority threads (llm.later_nice)
while enough of its audio is left to play: the pool's hand-over between two items (both ways), the
reply's pace, and the real llama.cpp model."""

from __future__ import annotations

import asyncio
import threading

import pytest

from voice_pipeline.threads import ThreadOwnedPool, can_wait


def _thread_nice(tid: int | None = None) -> int:
    """A thread's nice value, from /proc (field 19 of its stat); the calling thread's by default."""
    stat = open(f"/proc/self/task/{tid or threading.get_native_id()}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])


def _thread_cpu_ticks(tid: int) -> int:
    fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


async def test_a_stream_goes_on_in_the_later_threads_once_its_consumer_no_longer_waits():
    pool = ThreadOwnedPool(["context"], thread_name_prefix="gen", later_nice=10)
    assert len(_threads_named("gen-later")) == 1, "the later threads exist before any stream"
    base = _thread_nice()
    closed = threading.Event()

    def generate(_context: str):
        try:
            for i in range(8):
                yield i, _thread_nice(), threading.get_native_id()
        finally:
            closed.set()

    first_piece_out = threading.Event()
    seen = []
    async for i, nice, tid in pool.stream(generate, max_buffered=1, can_wait=first_piece_out.is_set):
        seen.append((nice, tid))
        if i == 1:
            first_piece_out.set()
    niceness = [nice for nice, _ in seen]
    assert niceness[:2] == [base, base], "urgent until the consumer says otherwise"
    assert niceness[-1] == min(19, base + 10), f"moved to the later threads: {niceness}"
    moved = niceness.index(niceness[-1])
    assert moved <= 4 and set(niceness[moved:]) == {niceness[-1]}, f"moved once, soon, for good: {niceness}"
    assert seen[moved][1] != seen[0][1], "another thread, not the first one re-niced"
    assert closed.is_set() and pool.free_count == 1
    assert _thread_nice() == base
    pool.close()


async def test_a_moved_stream_cancelled_by_its_consumer_closes_and_gives_its_context_back():
    pool = ThreadOwnedPool(["context"], thread_name_prefix="gen", later_nice=10)
    closed = threading.Event()

    def generate(_context: str):
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            closed.set()

    until = threading.Event()
    stream = pool.stream(generate, max_buffered=1, can_wait=until.is_set)
    async for i in stream:
        until.set()
        if i == 20:
            break
    await stream.aclose()
    assert closed.is_set() and pool.free_count == 1
    async for _ in pool.stream(lambda context: [context]):  # and the context is usable again
        pass
    pool.close()


async def test_without_a_later_lane_or_a_signal_every_item_stays_urgent():
    plain = ThreadOwnedPool(["context"], thread_name_prefix="plain")
    laned = ThreadOwnedPool(["context"], thread_name_prefix="laned", later_nice=10)
    base = _thread_nice()
    set_already = threading.Event()
    set_already.set()
    items = lambda _context: (_thread_nice() for _ in range(4))  # noqa: E731
    assert [n async for n in plain.stream(items, can_wait=set_already.is_set)] == [base] * 4  # no later threads
    assert [n async for n in laned.stream(items)] == [base] * 4  # nobody said the rest may wait
    plain.close()
    laned.close()


async def test_a_stream_comes_back_to_full_priority_when_its_consumer_waits_again():
    pool = ThreadOwnedPool(["context"], thread_name_prefix="gen", later_nice=10)
    base = _thread_nice()
    waiting = {"now": False}
    seen = []
    async for i, nice in pool.stream(lambda _c: ((i, _thread_nice()) for i in range(12)), max_buffered=1,
                                     can_wait=lambda: waiting["now"]):
        seen.append(nice)
        waiting["now"] = 2 <= i < 6  # urgent, then may wait, then urgent again (the audio ran low)
    later = min(19, base + 10)
    assert seen[:3] == [base] * 3 and later in seen[3:8], seen
    assert seen[-3:] == [base] * 3, f"back at full priority: {seen}"
    assert pool.free_count == 1
    pool.close()


def test_a_reply_may_wait_after_its_first_piece_while_enough_audio_is_left_to_play():
    from voice_pipeline.metrics import TurnTimeline
    from voice_pipeline.protocol.events import now
    from voice_pipeline.reply.pace import ReplyPace

    timeline = TurnTimeline()
    pace = ReplyPace(timeline, lead_ms=1500)
    assert not pace.can_wait(), "the listener waits for the first piece"
    pace.first_piece_written = True
    assert pace.can_wait(), "the first piece is being synthesized: the rest can wait"
    timeline.mark("first_audio_sent", now() - 1.0)  # playing for a second
    pace.audio_ms = 4000.0
    assert pace.can_wait(), "about 3 s left to play"
    pace.audio_ms = 2000.0
    assert not pace.can_wait(), "under 1.5 s left: the next piece is needed soon"


async def test_a_reply_marks_its_tokens_urgent_until_its_first_piece_is_written():
    from voice_pipeline.metrics import TurnTimeline
    from voice_pipeline.reply.speaking import Reply, ReplyPlan, ReplyRecord
    from voice_pipeline.session.outbox import Outbox

    seen: list[tuple[str, bool]] = []

    class WatchingLlm:
        name = "watching"

        async def stream(self, messages, *, max_tokens=None):
            waits = can_wait.get()
            assert waits is not None, "the reply tells its LLM when the rest may wait"
            for delta in ["Paris", " is", " the", " capital,", " and", " more", " words", " follow."]:
                seen.append((delta, waits()))
                yield delta
                await asyncio.sleep(0)

    reply = Reply(ReplyRecord("r1"), TurnTimeline(), session_id="s1", turn_id="t1", tts=None,
                  outbox=Outbox("s1"), output_rate_hz=24_000, emit=lambda event: None)
    await reply.run(WatchingLlm(), ReplyPlan(messages=[], max_tokens=16))  # type: ignore[arg-type]
    urgent = [delta for delta, later in seen if not later]
    assert urgent == ["Paris", " is", " the", " capital,", " and"], seen  # " and" completes "... capital,"
    assert can_wait.get() is None, "the reply's signal stays in its own task"


@pytest.fixture(scope="module")
def llm():
    from voice_pipeline.engines.llama_cpp import LlamaCppLlm

    model = LlamaCppLlm(n_threads=1, max_tokens=40, temperature=0.0, instances=1, later_nice=10)
    yield model
    model._contexts.close()


async def test_the_local_model_writes_the_rest_of_a_reply_in_its_later_thread(llm):
    from voice_pipeline.engines.base import ChatMessage

    later_threads = _threads_named("llm-later")
    assert len(later_threads) == 1 and _thread_nice(later_threads[0].native_id) == min(19, _thread_nice() + 10)
    tid = later_threads[0].native_id
    before = _thread_cpu_ticks(tid)
    tokens = 0
    can_wait.set(lambda: tokens >= 3)
    messages = [ChatMessage("user", "Tell me about the history of Paris in a few sentences.")]
    async for _ in llm.stream(messages, max_tokens=40):
        tokens += 1
    assert tokens > 10
    assert _thread_cpu_ticks(tid) > before, "the later tokens were computed in the niced thread"
    assert llm._contexts.free_count == 1
