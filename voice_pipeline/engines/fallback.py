"""A LanguageModel over a cascade of LanguageModels (e.g. remote large -> local small).

Each level is tried in order. A level that is refused by its circuit breaker, raises, ends without
a token, or misses its first-token budget *before yielding anything* is abandoned (its stream is
closed) and the next level is tried. Once a level has yielded text the reply belongs to it: if it
then fails or stalls, the reply ends with a short spoken notice (`cut_notice`) instead of splicing
in another model, which would not know what was already said and would start a different answer.

Every call can fill a `FallbackRecord` (which level answered, each attempt with its outcome and
reason, first-token time) for per-turn metrics and Prometheus counters. When every level fails
the stream raises `EngineError`; the session goes on to the deterministic and cached answers.
"""

from __future__ import annotations

import asyncio
import enum
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Mapping, Sequence

from voice_pipeline.engines.base import ChatMessage, LanguageModel
from voice_pipeline.errors import EngineError
from voice_pipeline.reply.phrasebook import CUT
from voice_pipeline.routing.breaker import CircuitBreaker

DEFAULT_CUT_NOTICE = CUT  # the phrasebook pre-synthesizes it: spoken from cache, like the apology


class Outcome(str, enum.Enum):
    ANSWERED = "answered"  # streamed to the end
    CUT = "cut"  # failed or stalled after yielding text; the reply was ended with the notice
    ERROR = "error"  # raised before the first token
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"  # missed its first-token budget
    EMPTY = "empty"  # ended without any text
    BREAKER_OPEN = "breaker_open"  # not called: its circuit breaker is open


@dataclass(frozen=True)
class Attempt:
    level: int  # 0 = first engine in the cascade
    engine: str
    outcome: Outcome
    reason: str = ""  # short, never contains user text
    first_token_ms: float | None = None  # from the start of the call, when a token came
    elapsed_ms: float = 0.0  # from the start of the call to the end of this attempt


@dataclass
class FallbackRecord:
    """Filled in as the call runs; read it after the stream ends (or while it runs)."""

    attempts: list[Attempt] = field(default_factory=list)
    answered_by: str | None = None
    answered_level: int | None = None
    tokens: int = 0

    @property
    def fallbacks(self) -> int:
        """Levels abandoned before one answered (breaker skips included)."""
        return sum(a.outcome not in (Outcome.ANSWERED, Outcome.CUT) for a in self.attempts)

    @property
    def budget_misses(self) -> int:
        return sum(a.outcome is Outcome.FIRST_TOKEN_TIMEOUT or a.reason == "stall" for a in self.attempts)

    @property
    def cut(self) -> bool:
        return any(a.outcome is Outcome.CUT for a in self.attempts)

    def summary(self) -> dict:
        """Plain values for the per-turn metrics event (no user text in here, ever)."""
        return {
            "llm_engine": self.answered_by,
            "llm_level": self.answered_level,
            "llm_tokens": self.tokens,
            "llm_fallbacks": self.fallbacks,
            "llm_budget_misses": self.budget_misses,
            "llm_cut": self.cut,
            "llm_attempts": [
                {"engine": a.engine, "level": a.level, "outcome": a.outcome.value, "reason": a.reason,
                 "first_token_ms": a.first_token_ms, "elapsed_ms": round(a.elapsed_ms, 1)}
                for a in self.attempts
            ],
        }


class _Failed(Exception):
    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class FallbackLLM:
    def __init__(
        self,
        engines: Sequence[LanguageModel],
        *,
        first_token_timeout_s: float | Sequence[float | None] | None = None,
        stall_timeout_s: float | None = None,
        breakers: Mapping[str, CircuitBreaker] | None = None,
        cut_notice: str = DEFAULT_CUT_NOTICE,
        clock: Callable[[], float] = time.monotonic,
        name: str = "fallback",
    ) -> None:
        """`first_token_timeout_s`: one budget for every level or one per level (None: no budget).
        `stall_timeout_s`: longest wait between tokens once text has flowed. `breakers`: keyed by
        engine name, usually only the remote one."""
        if not engines:
            raise ValueError("FallbackLLM needs at least one engine")
        self.engines = list(engines)
        self.name = name
        if first_token_timeout_s is None or isinstance(first_token_timeout_s, (int, float)):
            self.first_token_budgets_s = [first_token_timeout_s] * len(self.engines)
        else:
            self.first_token_budgets_s = list(first_token_timeout_s)
        if len(self.first_token_budgets_s) != len(self.engines):
            raise ValueError("one first-token budget per engine")
        self.stall_timeout_s = stall_timeout_s
        self.breakers = dict(breakers or {})
        self.cut_notice = cut_notice
        self._clock = clock

    async def warm_up(self, system_prompt: str) -> None:
        """Warm every level; a level that fails to warm is recorded on its breaker, not raised."""
        for engine in self.engines:
            try:
                await engine.warm_up(system_prompt)
            except EngineError:
                if (breaker := self.breakers.get(engine.name)) is not None:
                    breaker.record_failure()

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        record: FallbackRecord | None = None,
    ) -> AsyncIterator[str]:
        record = record if record is not None else FallbackRecord()
        started_s = self._clock()
        for level, engine in enumerate(self.engines):
            breaker = self.breakers.get(engine.name)
            if breaker is not None and not breaker.allow():
                record.attempts.append(self._attempt(level, engine, Outcome.BREAKER_OPEN, "breaker open", started_s))
                continue
            attempt = _LevelAttempt(self, level, engine, breaker, record, started_s)
            async with aclosing(attempt.run(messages, max_tokens)) as texts:
                async for text in texts:
                    yield text
            if attempt.answered:
                return
        raise EngineError("llm", f"{self.name}: every level failed")

    def _attempt(self, level: int, engine: LanguageModel, outcome: Outcome, reason: str, started_s: float,
                 first_token_ms: float | None = None) -> Attempt:
        elapsed_ms = (self._clock() - started_s) * 1000.0
        return Attempt(level, engine.name, outcome, reason, first_token_ms, elapsed_ms)


class _LevelAttempt:
    """One level's try: first token under budget, then the rest; updates record and breaker."""

    def __init__(self, owner: FallbackLLM, level: int, engine: LanguageModel, breaker: CircuitBreaker | None,
                 record: FallbackRecord, started_s: float) -> None:
        self.owner, self.level, self.engine, self.breaker = owner, level, engine, breaker
        self.record, self.started_s = record, started_s
        self.answered = False
        self.first_token_ms: float | None = None

    async def run(self, messages: Sequence[ChatMessage], max_tokens: int | None) -> AsyncIterator[str]:
        try:
            tokens = self.engine.stream(messages, max_tokens=max_tokens).__aiter__()
        except EngineError as exc:  # an engine that fails before it even returns a stream
            self._finish(Outcome.ERROR, _short(exc))
            return
        settled = False
        last_text = ""
        try:
            first = await self._first_token(tokens)
            self.answered = True
            self.record.answered_by, self.record.answered_level = self.engine.name, self.level
            self.record.tokens += 1
            last_text = first
            yield first
            async with aclosing(self._rest(tokens)) as rest:
                async for text in rest:
                    self.record.tokens += 1
                    last_text = text
                    yield text
            settled = True
        except _Failed as failure:
            settled = True
            self._finish(failure.outcome, failure.reason)
            if self.answered and self.owner.cut_notice:
                yield _notice_after(last_text, self.owner.cut_notice)
        finally:
            await _close(tokens)
            if not settled:
                self._interrupted()
        if self.answered and not self.record.cut:
            self._finish(Outcome.ANSWERED, "")

    async def _first_token(self, tokens: AsyncIterator[str]) -> str:
        budget_s = self.owner.first_token_budgets_s[self.level]
        while True:
            text = await self._next(tokens, budget_s, Outcome.FIRST_TOKEN_TIMEOUT, "first token")
            if text is None:
                raise _Failed(Outcome.EMPTY, "no text")
            if text:
                self.first_token_ms = (self.owner._clock() - self.started_s) * 1000.0
                return text

    async def _rest(self, tokens: AsyncIterator[str]) -> AsyncIterator[str]:
        while (text := await self._next(tokens, self.owner.stall_timeout_s, Outcome.CUT, "stall")) is not None:
            if text:
                yield text

    async def _next(self, tokens: AsyncIterator[str], budget_s: float | None, timeout_outcome: Outcome,
                    what: str) -> str | None:
        outcome = Outcome.CUT if self.answered else Outcome.ERROR
        try:
            async with asyncio.timeout(budget_s):
                return await anext(tokens)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            raise _Failed(timeout_outcome, what) from exc
        except EngineError as exc:
            raise _Failed(outcome, _short(exc)) from exc
        except (OSError, RuntimeError, ValueError) as exc:  # a misbehaving engine, not our caller
            raise _Failed(outcome, type(exc).__name__) from exc

    def _interrupted(self) -> None:
        """The consumer closed the stream (barge-in): neither a success nor a failure."""
        if self.answered:
            self.record.attempts.append(self.owner._attempt(
                self.level, self.engine, Outcome.ANSWERED, "interrupted", self.started_s, self.first_token_ms))
        if self.breaker is not None:
            self.breaker.release()

    def _finish(self, outcome: Outcome, reason: str) -> None:
        self.record.attempts.append(
            self.owner._attempt(self.level, self.engine, outcome, reason, self.started_s, self.first_token_ms))
        if self.breaker is None:
            return
        if outcome is Outcome.ANSWERED:
            self.breaker.record_success()
        else:
            self.breaker.record_failure()


def _notice_after(last_text: str, notice: str) -> str:
    """End the cut sentence audibly ("...") unless it already ended, then the notice."""
    return (" " if last_text.rstrip().endswith((".", "!", "?")) else "... ") + notice


def _short(exc: EngineError) -> str:
    return str(exc)[:120]


async def _close(tokens: AsyncIterator[str]) -> None:
    aclose = getattr(tokens, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except (EngineError, OSError, RuntimeError):
            pass  # the level already failed; closing it must not hide the fallback
