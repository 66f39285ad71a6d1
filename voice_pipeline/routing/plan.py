"""One call per user turn: which level answers it (instant template, small model, large model).

Templates come first: they match whole utterances only ("stop", "what time is it"), so when one
matches its answer is right whatever the classifier says. Otherwise the router decides; an
instant-routed turn with no template goes to the small model, and a large-routed turn goes to the
small model when no large model is available (not configured, switched off, breaker open).
"""

from __future__ import annotations

from dataclasses import dataclass

from voice_pipeline.routing.instant import InstantAnswer, InstantContext, answer_instant
from voice_pipeline.routing.model import Route, RouteDecision, Router


@dataclass(frozen=True)
class TurnPlan:
    route: Route  # the level that will answer
    decision: RouteDecision  # what the classifier said (for metrics, even when overridden)
    instant: InstantAnswer | None  # set exactly when route is INSTANT
    reason: str  # "template" | "router" | "no_template" | "large_unavailable"


def plan_turn(router: Router, text: str, context: InstantContext, *, large_available: bool = True) -> TurnPlan:
    decision = router.route(text)
    instant = answer_instant(text, context)
    if instant is not None:
        return TurnPlan(Route.INSTANT, decision, instant, "template")
    if decision.route is Route.INSTANT:
        return TurnPlan(Route.SMALL, decision, None, "no_template")
    if decision.route is Route.LARGE and not large_available:
        return TurnPlan(Route.SMALL, decision, None, "large_unavailable")
    return TurnPlan(decision.route, decision, None, "router")
