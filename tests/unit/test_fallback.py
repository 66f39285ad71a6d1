"""FallbackLLM over scripted fake engines: order of levels, budgets, cut streams, breaker, records."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence

import pytest

from voice_pipeline.engines.base import ChatMessage, LanguageModel
from voice_pipeline.engines.fallback import FallbackLLM, FallbackRecord, Outcome
from voice_pipeline.errors import EngineError
from voice_pipeline.routing.breaker import BreakerState, CircuitBreaker

HANG = object()  # the fake waits forever at this point (a budget must end it)
MESSAGES = [ChatMessage("user", "hello")]
# Budgets only ever end a wait on a fake that hangs forever, so their size cannot change a result.
BUDGET_S = 0.05


class FakeLLM:
    def __init__(self, name: str, script: Sequence[object]) -> None:
        self.name = name
        self.script = list(script)
        self.calls = 0
        self.closed = 0
        self.warmed = False

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]:
        self.calls += 1
        try:
            for item in self.script:
                if item is HANG:
                    await asyncio.Event().wait()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.closed += 1

    async def warm_up(self, system_prompt: str) -> None:
        self.warmed = True


class FailingWarmUp(FakeLLM):
    async def warm_up(self, system_prompt: str) -> None:
        raise EngineError("llm", "down")


async def collect(llm: FallbackLLM, record: FallbackRecord) -> str:
    return "".join([text async for text in llm.stream(MESSAGES, record=record)])


def outcomes(record: FallbackRecord) -> list[tuple[str, Outcome]]:
    return [(a.engine, a.outcome) for a in record.attempts]


def test_is_a_language_model() -> None:
    assert isinstance(FallbackLLM([FakeLLM("a", ["x"])]), LanguageModel)


async def test_first_level_answers() -> None:
    remote, local = FakeLLM("remote", ["Hel", "lo."]), FakeLLM("local", ["Hi."])
    record = FallbackRecord()
    assert await collect(FallbackLLM([remote, local], first_token_timeout_s=BUDGET_S), record) == "Hello."
    assert (record.answered_by, record.answered_level, record.tokens) == ("remote", 0, 2)
    assert outcomes(record) == [("remote", Outcome.ANSWERED)]
    assert record.attempts[0].first_token_ms is not None
    assert local.calls == 0 and remote.closed == 1
    assert (record.fallbacks, record.budget_misses, record.cut) == (0, 0, False)


async def test_error_before_first_token_falls_back() -> None:
    remote, local = FakeLLM("remote", [EngineError("llm", "HTTP 500")]), FakeLLM("local", ["Hi."])
    record = FallbackRecord()
    assert await collect(FallbackLLM([remote, local]), record) == "Hi."
    assert outcomes(record) == [("remote", Outcome.ERROR), ("local", Outcome.ANSWERED)]
    assert "HTTP 500" in record.attempts[0].reason
    assert record.answered_level == 1 and record.fallbacks == 1 and record.budget_misses == 0


async def test_missed_first_token_budget_closes_the_slow_level_and_falls_back() -> None:
    remote, local = FakeLLM("remote", [HANG, "late"]), FakeLLM("local", ["Hi."])
    record = FallbackRecord()
    assert await collect(FallbackLLM([remote, local], first_token_timeout_s=[BUDGET_S, None]), record) == "Hi."
    assert outcomes(record) == [("remote", Outcome.FIRST_TOKEN_TIMEOUT), ("local", Outcome.ANSWERED)]
    assert remote.closed == 1
    assert record.budget_misses == 1 and record.attempts[0].first_token_ms is None


async def test_empty_reply_falls_back() -> None:
    record = FallbackRecord()
    llm = FallbackLLM([FakeLLM("remote", ["", ""]), FakeLLM("local", ["Hi."])])
    assert await collect(llm, record) == "Hi."
    assert outcomes(record) == [("remote", Outcome.EMPTY), ("local", Outcome.ANSWERED)]


async def test_failure_after_tokens_ends_with_the_notice_and_does_not_splice() -> None:
    remote = FakeLLM("remote", ["The answer", " is", EngineError("llm", "stream ended early")])
    local = FakeLLM("local", ["Hi."])
    record = FallbackRecord()
    text = await collect(FallbackLLM([remote, local], cut_notice="Sorry, lost it."), record)
    assert text == "The answer is... Sorry, lost it."
    assert outcomes(record) == [("remote", Outcome.CUT)]
    assert record.answered_by == "remote" and record.cut and local.calls == 0


async def test_stall_after_tokens_is_a_cut_and_a_budget_miss() -> None:
    remote = FakeLLM("remote", ["Part one", HANG])
    record = FallbackRecord()
    text = await collect(FallbackLLM([remote], stall_timeout_s=BUDGET_S, cut_notice=""), record)
    assert text == "Part one"
    assert outcomes(record) == [("remote", Outcome.CUT)]
    assert record.budget_misses == 1 and remote.closed == 1


async def test_every_level_failing_raises_with_the_record_filled() -> None:
    record = FallbackRecord()
    llm = FallbackLLM([FakeLLM("remote", [EngineError("llm", "down")]), FakeLLM("local", [RuntimeError("bug")])])
    with pytest.raises(EngineError):
        await collect(llm, record)
    assert outcomes(record) == [("remote", Outcome.ERROR), ("local", Outcome.ERROR)]
    assert record.answered_by is None and record.fallbacks == 2


async def test_open_breaker_skips_the_level_without_calling_it() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cool_down_s=10, clock=lambda: now[0])
    remote = FakeLLM("remote", [EngineError("llm", "down")])
    local = FakeLLM("local", ["Hi."])
    llm = FallbackLLM([remote, local], breakers={"remote": breaker})
    for _ in range(2):
        await collect(llm, FallbackRecord())
    assert breaker.state is BreakerState.OPEN
    record = FallbackRecord()
    assert await collect(llm, record) == "Hi."
    assert outcomes(record) == [("remote", Outcome.BREAKER_OPEN), ("local", Outcome.ANSWERED)]
    assert remote.calls == 2
    now[0] = 10.0  # cool-down over: one probe goes through and, succeeding, closes the breaker
    remote.script = ["Back."]
    record = FallbackRecord()
    assert await collect(llm, record) == "Back."
    assert breaker.state is BreakerState.CLOSED and record.answered_by == "remote"


async def test_consumer_closing_early_closes_the_engine_and_releases_the_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cool_down_s=1, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 1.0
    remote = FakeLLM("remote", ["one", "two", "three"])
    llm = FallbackLLM([remote], breakers={"remote": breaker})
    record = FallbackRecord()
    stream = llm.stream(MESSAGES, record=record)
    assert await anext(stream) == "one"
    await stream.aclose()
    assert remote.closed == 1
    assert outcomes(record) == [("remote", Outcome.ANSWERED)] and record.attempts[0].reason == "interrupted"
    assert breaker.state is BreakerState.HALF_OPEN and breaker.allow()


async def test_cancelling_the_consumer_while_waiting_for_the_first_token() -> None:
    remote = FakeLLM("remote", [HANG])
    llm = FallbackLLM([remote])
    record = FallbackRecord()
    task = asyncio.create_task(collect(llm, record))
    while remote.calls == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert remote.closed == 1 and record.attempts == []


async def test_warm_up_failure_counts_on_the_breaker_only() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cool_down_s=60)
    local = FakeLLM("local", ["Hi."])
    await FallbackLLM([FailingWarmUp("remote", []), local], breakers={"remote": breaker}).warm_up("sys")
    assert breaker.state is BreakerState.OPEN and local.warmed


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        FallbackLLM([])
    with pytest.raises(ValueError):
        FallbackLLM([FakeLLM("a", [])], first_token_timeout_s=[1.0, 2.0])


async def test_summary_lists_attempts_in_order_for_metrics() -> None:
    record = FallbackRecord()
    llm = FallbackLLM([FakeLLM("remote", [EngineError("llm", "HTTP 503")]), FakeLLM("local", ["Hi", "."])])
    await collect(llm, record)
    summary = record.summary()
    assert (summary["llm_engine"], summary["llm_level"], summary["llm_tokens"]) == ("local", 1, 2)
    assert (summary["llm_fallbacks"], summary["llm_budget_misses"], summary["llm_cut"]) == (1, 0, False)
    assert [(a["engine"], a["outcome"]) for a in summary["llm_attempts"]] == [("remote", "error"), ("local", "answered")]
    assert summary["llm_attempts"][0]["first_token_ms"] is None
    assert summary["llm_attempts"][1]["first_token_ms"] is not None


async def test_notice_after_a_finished_sentence_needs_no_ellipsis() -> None:
    remote = FakeLLM("remote", ["Paris.", EngineError("llm", "cut")])
    assert await collect(FallbackLLM([remote], cut_notice="Sorry."), FallbackRecord()) == "Paris. Sorry."


class RaisesOnCall(FakeLLM):
    def stream(self, messages, *, max_tokens=None):
        raise EngineError("llm", "not configured")


async def test_engine_failing_when_called_falls_back() -> None:
    record = FallbackRecord()
    assert await collect(FallbackLLM([RaisesOnCall("remote", []), FakeLLM("local", ["Hi."])]), record) == "Hi."
    assert outcomes(record) == [("remote", Outcome.ERROR), ("local", Outcome.ANSWERED)]
