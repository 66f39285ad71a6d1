"""Decides, per user turn, which level answers it, and builds the LLM cascades behind each route.

Levels, from the richest to the last resort:
  large (remote model; falls back to the local model within its first-token budget)
  small (the local model, with its own first-token budget)
  instant (templates: time, greetings, stop, repeat, ...; no model at all)
  cached ("sorry, could you say that again?", pre-synthesized)
  escalation (an event to the client; the telephony bridge turns it into a transfer)
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.base import ChatMessage, LanguageModel
from voice_pipeline.engines.fallback import FallbackLLM
from voice_pipeline.routing.breaker import BreakerState, CircuitBreaker
from voice_pipeline.routing.instant import InstantAction, InstantContext
from voice_pipeline.routing.model import Route, Router
from voice_pipeline.routing.plan import plan_turn
from voice_pipeline.tools import ToolRegistry
from voice_pipeline.reply.tools import ToolRequest


class Level(enum.StrEnum):
    """Who answers a turn: a route (the first four) or, after the reply, the level that did."""

    INSTANT = "instant"
    SMALL = "small"
    LARGE = "large"
    CACHED = "cached"
    LOCAL = "local"  # routed large, answered by the local model (the remote one failed or was late)
    NONE = "none"  # nothing could be said, not even the cached apology
    PARTIAL = "partial"  # the answer broke off after the user started hearing it


@dataclass(frozen=True)
class Answer:
    route: Level  # INSTANT, SMALL, LARGE or CACHED
    reason: str  # why: template, router, no_template, large_unavailable, routing_off, llm_off
    confidence: float | None = None  # the router's, when it was asked
    text: str | None = None  # a fixed answer (template or deterministic), spoken as is
    action: InstantAction | None = None
    llm: LanguageModel | None = None
    filler: bool = False  # speak the cached filler while `llm` gets going
    route_ms: float = 0.0  # time spent deciding
    tools: ToolRequest | None = None  # the session's tools go to `llm` (the remote model's tool calling)
    messages: Sequence[ChatMessage] | None = None  # the prompt, when not the conversation's (a tool continuation)
    effect: object | None = None  # a built-in tool's request to the session (a timer), once the reply is given


class Answerer:
    def __init__(
        self,
        router: Router | None,
        small: LanguageModel | None,
        large: LanguageModel | None = None,
        remote_breaker: CircuitBreaker | None = None,
        filler: bool = True,
    ) -> None:
        self.router, self.small, self.large = router, small, large
        self.remote_breaker = remote_breaker
        self.filler = filler
        self.local_tools: ToolRegistry | None = None  # tools of the instant route; None: the built-in ones

    @classmethod
    def from_settings(cls, settings: Settings, local: LanguageModel | None) -> "Answerer":
        budgets, remote = settings.budgets, settings.remote
        router = None
        if settings.routing.enabled:
            router = Router.load(settings.routing.weights_path or None)
        if not settings.capabilities.llm or local is None:
            return cls(router, None)
        small = FallbackLLM([local], first_token_timeout_s=budgets.llm_first_token_ms / 1000.0, name="small")
        large, breaker = None, None
        if remote.url:
            from voice_pipeline.engines.openai_compat import OpenAICompatLLM

            remote_llm = OpenAICompatLLM.from_settings(remote)
            breaker = CircuitBreaker(remote.breaker_failures, remote.breaker_cool_down_s)
            large = FallbackLLM(
                [remote_llm, local],
                first_token_timeout_s=[remote.first_token_ms / 1000.0, budgets.llm_first_token_ms / 1000.0],
                stall_timeout_s=remote.stall_ms / 1000.0,
                breakers={remote_llm.name: breaker},
                name="large",
            )
        return cls(router, small, large, breaker, remote.filler)

    @property
    def large_available(self) -> bool:
        return self.large is not None and (
            self.remote_breaker is None or self.remote_breaker.state is not BreakerState.OPEN
        )

    def plan(self, text: str, last_reply: str | None, now: datetime | None = None,
             tools: ToolRequest | None = None) -> Answer:
        """Route one turn. With the session's `tools`, turns the instant route cannot answer (all of
        them when a tool is required, and every continuation after tool outputs) go to the remote
        model with those tools, while it is available."""
        started = time.perf_counter()
        context = InstantContext(now=now or datetime.now().astimezone(), last_reply=last_reply, tools=self.local_tools)
        tool_llm = self._with_tools(tools)
        if tools is not None and tools.continuing is not None:
            if tool_llm is not None:
                return _with_time(Answer(Level.LARGE, "tool_output", llm=tool_llm, tools=tools,
                                         messages=tools.continuing.plain_messages()), started)
            llm = self.large or self.small  # no remote now: the cascade answers from the results as text
            return _with_time(Answer(Level.SMALL if llm is self.small else Level.LARGE, "tool_output", llm=llm,
                                     messages=tools.continuing.plain_messages()), started)
        if tool_llm is not None and tools is not None and tools.required:
            return _with_time(Answer(Level.LARGE, "tools", llm=tool_llm, tools=tools), started)
        if self.router is None:
            answer = self._without_router(text, context)
        else:
            plan = plan_turn(self.router, text, context, large_available=self.large_available)
            if plan.route is Route.INSTANT and plan.instant is not None:
                reason = "tool" if plan.instant.intent.startswith("tool:") else plan.reason
                answer = Answer(Level.INSTANT, reason, plan.decision.confidence, plan.instant.text, plan.instant.action,
                                effect=plan.instant.effect)
            elif self.small is None:
                answer = Answer(Level.INSTANT, "llm_off", plan.decision.confidence)
            elif plan.route is Route.LARGE:
                answer = Answer(Level.LARGE, plan.reason, plan.decision.confidence, llm=self.large, filler=self.filler)
            else:
                answer = Answer(Level.SMALL, plan.reason, plan.decision.confidence, llm=self.small)
        if tool_llm is not None and answer.route is not Level.INSTANT:
            answer = Answer(Level.LARGE, "tools", answer.confidence, llm=tool_llm, tools=tools)
        return _with_time(answer, started)

    def _with_tools(self, tools: ToolRequest | None) -> LanguageModel | None:
        """The large cascade with the session's tools bound to its remote level; None without a remote."""
        if tools is None or not isinstance(self.large, FallbackLLM) or not self.large_available:
            return None
        from voice_pipeline.engines.openai_compat import OpenAICompatLLM
        from voice_pipeline.engines.tool_calling import ToolCallingLLM

        remote, *rest = self.large.engines
        if not isinstance(remote, OpenAICompatLLM):
            return None
        return FallbackLLM([ToolCallingLLM(remote, tools), *rest], first_token_timeout_s=self.large.first_token_budgets_s,
                           stall_timeout_s=self.large.stall_timeout_s, breakers=self.large.breakers, name="large")

    def _without_router(self, text: str, context: InstantContext) -> Answer:
        from voice_pipeline.routing.instant import answer_instant

        instant = answer_instant(text, context)
        if instant is not None:
            reason = "tool" if instant.intent.startswith("tool:") else "template"
            return Answer(Level.INSTANT, reason, text=instant.text, action=instant.action, effect=instant.effect)
        if self.small is None:
            return Answer(Level.INSTANT, "llm_off")
        return Answer(Level.SMALL, "routing_off", llm=self.small)


def _with_time(answer: Answer, started: float) -> Answer:
    from dataclasses import replace

    return replace(answer, route_ms=round(1000.0 * (time.perf_counter() - started), 3))
