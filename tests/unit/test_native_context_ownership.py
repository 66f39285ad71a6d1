"""A llama.cpp context is used by one thread at a time, however the reply's task is cancelled.

The fake context's "native call" blocks in its worker thread (one token every few ms) and records
when a second thread enters it before the first has left. Each case cancels the consumer twice
(first cancel, then a second one while its clean-up waits for the thread: a `response.cancel`
followed by the session's teardown), at every await point, and immediately starts another reply
on the same pool.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from voice_pipeline.engines.base import ChatMessage

TOKEN_S = 0.03  # a short native step (decode one token)
SLOW_S = 0.25  # a long one: prompt evaluation of long instructions, or a slow decode
TOKENS = 4


class FakeLlamaContext:
    """Stands in for `llama_cpp.Llama`: a streaming completion that detects concurrent use.

    A user message "slow" makes every native step (prompt evaluation, then each token) long."""

    instances: list["FakeLlamaContext"] = []

    def __init__(self, *args, **kwargs) -> None:
        self._inside = threading.Lock()
        self.overlaps = 0
        FakeLlamaContext.instances.append(self)

    def create_chat_completion(self, messages, stream, max_tokens, temperature):
        return self._tokens(SLOW_S if messages[-1]["content"] == "slow" else TOKEN_S, max_tokens)

    def _tokens(self, step_s: float, max_tokens: int):
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1  # another thread is inside this context right now
            return
        try:
            time.sleep(step_s)  # prompt evaluation: cancelling a task cannot stop it
            for i in range(min(max_tokens, TOKENS)):
                yield {"choices": [{"delta": {"content": f"w{i} "}}]}
                time.sleep(step_s)  # the next decode
        finally:
            self._inside.release()


@pytest.fixture()
def llm(monkeypatch):
    llama_cpp = pytest.importorskip("llama_cpp")
    monkeypatch.setattr(llama_cpp, "Llama", FakeLlamaContext)
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    from voice_pipeline.engines.llama_cpp import LlamaCppLlm

    FakeLlamaContext.instances = []
    return LlamaCppLlm(model_path="/fake/model.gguf", instances=2)  # the server's default


def overlaps() -> int:
    return sum(context.overlaps for context in FakeLlamaContext.instances)


async def _consume(llm, received: list[str], got: asyncio.Event, after: int, text: str = "hi") -> None:
    async for token in llm.stream([ChatMessage("user", text)]):
        received.append(token)
        if len(received) >= after:
            got.set()


async def _cancel_twice(task: asyncio.Task) -> None:
    task.cancel()
    for _ in range(3):  # let the first cancellation reach the clean-up that waits for the thread
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("after_tokens", range(0, TOKENS))
async def test_double_cancel_never_shares_the_context(llm, after_tokens):
    """A slow reply is cancelled twice while its thread is inside a native step; another session
    holds the second context and finishes soon; a third reply starts at once. It must wait for a
    context that no thread is using."""
    slow_tokens: list[str] = []
    got = asyncio.Event()
    slow = asyncio.create_task(_consume(llm, slow_tokens, got, max(1, after_tokens), "slow"))
    if after_tokens == 0:
        await asyncio.sleep(SLOW_S / 5)  # inside the prompt evaluation
    else:
        await got.wait()  # inside the next token's decode
    other = asyncio.create_task(_consume(llm, [], asyncio.Event(), 1))
    await asyncio.sleep(0.005)
    await _cancel_twice(slow)
    third: list[str] = []
    await asyncio.wait_for(_consume(llm, third, asyncio.Event(), 1), 5)
    await other
    assert overlaps() == 0
    assert third, "the third reply ran once a context was free"


async def test_cancel_while_waiting_for_a_context_loses_nothing(llm):
    holders = [asyncio.create_task(_consume(llm, [], asyncio.Event(), 1)) for _ in range(2)]
    await asyncio.sleep(TOKEN_S / 3)
    waiter = asyncio.create_task(_consume(llm, [], asyncio.Event(), 1))
    await asyncio.sleep(0)
    await _cancel_twice(waiter)  # cancelled while queued for a context
    await asyncio.gather(*holders)
    after: list[list[str]] = [[], []]
    await asyncio.wait_for(asyncio.gather(*(_consume(llm, a, asyncio.Event(), 1) for a in after)), 5)
    assert all(after) and overlaps() == 0, "both contexts are free again"


async def test_many_replies_cancelled_at_random_moments_stay_one_per_context(llm):
    import random

    rng = random.Random(12)
    for _ in range(10):
        tasks = [asyncio.create_task(_consume(llm, [], asyncio.Event(), 1, rng.choice(["hi", "slow"])))
                 for _ in range(4)]
        await asyncio.sleep(rng.uniform(0, 2 * TOKEN_S))
        await asyncio.gather(*(_cancel_twice(t) for t in tasks[:3]))
        await asyncio.wait_for(asyncio.gather(tasks[3], return_exceptions=True), 10)
    assert overlaps() == 0


class Native:
    def __init__(self) -> None:
        self._inside = threading.Lock()
        self.overlaps = 0

    def call(self, value: int) -> int:
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1
            return -1
        try:
            time.sleep(TOKEN_S)
            return value
        finally:
            self._inside.release()


async def test_run_releases_only_after_the_thread_returns():
    from voice_pipeline.threads import ThreadOwnedPool

    native = Native()
    pool = ThreadOwnedPool([native], thread_name_prefix="test")
    first = asyncio.create_task(pool.run(lambda n: n.call(1)))
    await asyncio.sleep(TOKEN_S / 3)
    await _cancel_twice(first)
    assert pool.free_count == 0, "still lent: the thread is inside the call"
    assert await pool.run(lambda n: n.call(2)) == 2
    assert native.overlaps == 0 and pool.free_count == 1
    pool.close()


async def test_a_failing_call_gives_the_resource_back():
    from voice_pipeline.threads import ThreadOwnedPool

    pool = ThreadOwnedPool([object()], thread_name_prefix="test")

    def fail(_resource):
        raise RuntimeError("native failure")

    with pytest.raises(RuntimeError):
        await pool.run(fail)
    with pytest.raises(RuntimeError):
        async for _ in pool.stream(fail):
            pass
    await asyncio.sleep(0)
    assert pool.free_count == 1
    pool.close()


def test_one_pool_serves_one_event_loop_after_another():
    """A model loaded once serves tests (or servers) that each run their own event loop."""
    from voice_pipeline.threads import ThreadOwnedPool

    native = Native()
    pool = ThreadOwnedPool([native], thread_name_prefix="test")
    for value in range(3):
        assert asyncio.run(pool.run(lambda n, v=value: n.call(v))) == value

    async def cancelled_then_used() -> int:
        first = asyncio.create_task(pool.run(lambda n: n.call(7)))
        await asyncio.sleep(TOKEN_S / 3)
        first.cancel()
        return await pool.run(lambda n: n.call(8))

    assert asyncio.run(cancelled_then_used()) == 8
    assert asyncio.run(pool.run(lambda n: n.call(9))) == 9
    assert native.overlaps == 0 and pool.free_count == 1
    pool.close()
