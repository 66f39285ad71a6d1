"""plan_turn: templates first, then the router, with the small model as the safe default."""

from __future__ import annotations

from datetime import datetime

import pytest

from voice_pipeline.routing import Route, Router
from voice_pipeline.routing.instant import InstantAction, InstantContext
from voice_pipeline.routing.plan import plan_turn

CONTEXT = InstantContext(now=datetime(2026, 11, 22, 15, 10), last_reply="Paris.")


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


def test_template_match_answers_instantly(router: Router) -> None:
    plan = plan_turn(router, "what time is it", CONTEXT)
    assert (plan.route, plan.reason) == (Route.INSTANT, "template")
    assert plan.instant is not None and plan.instant.text == "It's ten past three in the afternoon."
    assert plan.decision.route is Route.INSTANT


def test_template_wins_over_the_classifier(router: Router) -> None:
    # "stop it now please" must always stop, whatever the classifier says about it.
    plan = plan_turn(router, "okay stop it now please", CONTEXT)
    assert plan.route is Route.INSTANT and plan.instant.action is InstantAction.CANCEL


def test_instant_route_without_template_goes_small(router: Router) -> None:
    text = "help me out what can you do"  # the classifier calls it instant; no template answers it
    assert router.route(text).route is Route.INSTANT
    plan = plan_turn(router, text, CONTEXT)
    assert (plan.route, plan.reason, plan.instant) == (Route.SMALL, "no_template", None)


def test_large_route_and_its_fallback_when_unavailable(router: Router) -> None:
    text = "write a python function that merges two sorted lists and explain it"
    assert plan_turn(router, text, CONTEXT).route is Route.LARGE
    plan = plan_turn(router, text, CONTEXT, large_available=False)
    assert (plan.route, plan.reason) == (Route.SMALL, "large_unavailable")
    assert plan.decision.route is Route.LARGE


def test_small_route(router: Router) -> None:
    plan = plan_turn(router, "who wrote the great gatsby", CONTEXT)
    assert (plan.route, plan.reason) == (Route.SMALL, "router")
