"""Router: the held-out accuracy gate, deterministic retraining, features and the CLI's JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voice_pipeline.app import cli
from voice_pipeline.routing import Route, Router
from voice_pipeline.routing.features import featurize, normalize
from voice_pipeline.routing.model import EVAL_PATH
from voice_pipeline.routing.training import evaluate, load_split, train


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


def test_heldout_accuracy_is_not_below_the_committed_figure(router: Router) -> None:
    committed = json.loads(EVAL_PATH.read_text())
    report = evaluate(router, *load_split("heldout"))
    assert report["data_version"] == committed["data_version"]
    assert report["n"] == committed["n"]
    assert report["accuracy"] >= committed["accuracy"]


def test_retraining_reproduces_the_committed_predictions(router: Router) -> None:
    retrained = train(*load_split("train"))
    texts, _ = load_split("heldout")
    assert [retrained.route(t).route for t in texts] == [router.route(t).route for t in texts]


def test_train_and_heldout_do_not_share_utterances() -> None:
    train_texts = {normalize(t) for t in load_split("train")[0]}
    assert not [t for t in load_split("heldout")[0] if normalize(t) in train_texts]


@pytest.mark.parametrize(
    ("text", "route"),
    [
        ("what time is it", Route.INSTANT),
        ("thank you", Route.INSTANT),
        ("what's the capital of france", Route.SMALL),
        ("write a python function that reverses a linked list", Route.LARGE),
    ],
)
def test_clear_cases(router: Router, text: str, route: Route) -> None:
    decision = router.route(text)
    assert decision.route is route
    assert 0.5 < decision.confidence <= 1.0


def test_features_ignore_case_and_punctuation() -> None:
    plain, shouted = featurize("what time is it"), featurize("What TIME is it?!")
    assert np.array_equal(plain[0], shouted[0]) and np.allclose(plain[1], shouted[1])


def test_empty_text_still_routes(router: Router) -> None:
    decision = router.route("  ?! ")
    assert decision.route in set(Route)


def test_cli_route_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["route", "what's the date", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["route", "confidence"]
    assert printed["route"] == "instant"
    assert 0.0 <= printed["confidence"] <= 1.0


def test_cli_eval_router_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", "router", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == ["instant", "small", "large"]
    assert np.array(report["confusion_matrix"]).shape == (3, 3)
    assert sum(map(sum, report["confusion_matrix"])) == report["n"]
