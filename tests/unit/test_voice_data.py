"""The voice training data follows its rules: spoken style, chat format, disjoint splits, same system prompt."""

from __future__ import annotations

import re

import pytest

from voice_pipeline.finetune import data
from voice_pipeline.finetune.templated import normalize_prompt
from voice_pipeline.spoken_numbers import say_decimal, say_number

SPLITS = {name: data.load(name) for name in ("train", "heldout")}


def test_split_sizes():
    assert len(SPLITS["train"]) >= 300
    assert 70 <= len(SPLITS["heldout"]) <= 100
    assert 30 <= len(data.load_factual()) <= 60
    assert 30 <= len(data.load_factual("factual_dev")) <= 60


def test_committed_jsonl_matches_the_sources():
    built = data.build()
    for name, conversations in SPLITS.items():
        assert [c.to_json() for c in conversations] == [c.to_json() for c in built[name]], name


@pytest.mark.parametrize("name", ["train", "heldout"])
def test_chat_format_and_system_prompt(name):
    system = data.system_prompt()
    for conversation in SPLITS[name]:
        roles = [m["role"] for m in conversation.messages]
        assert roles[0] == "system" and conversation.messages[0]["content"] == system
        assert roles[1::2] == ["user"] * len(roles[1::2])
        assert roles[2::2] == ["assistant"] * len(roles[2::2])
        assert roles[-1] == "assistant"
        assert conversation.source


@pytest.mark.parametrize("name", ["train", "heldout"])
def test_replies_follow_the_voice_rules(name):
    broken = [(r, data.reply_problems(r)) for c in SPLITS[name] for r in c.replies() if data.reply_problems(r)]
    assert broken == []


def _said(text: str) -> str:
    return normalize_prompt(re.sub(r"\d+", lambda m: say_number(int(m.group())), text))


def test_heldout_and_factual_never_trained_on():
    trained = {key(t) for c in SPLITS["train"] for t in c.user_turns() for key in (normalize_prompt, _said)}
    heldout = {normalize_prompt(t) for c in SPLITS["heldout"] for t in c.user_turns()}
    for name in ("factual", "factual_dev"):
        asked = {normalize_prompt(item["question"]) for item in data.load_factual(name)}
        assert trained & asked == set(), name
    assert trained & heldout == set()


def test_training_versions_build_from_their_sources():
    assert [c.to_json() for c in data.load("train", "v1")] == [c.to_json() for c in data.build("v1")["train"]]
    v1, v2 = data.load("train", "v1"), SPLITS["train"]
    assert sum(c.source == "templated" for c in v1) > sum(c.source == "templated" for c in v2) > 0
    assert any(c.source.startswith("handwritten:short_facts") for c in v2)
    assert not any(c.source.startswith("handwritten:short_facts") for c in v1)


def test_data_has_multiturn_clarifications_and_refusals():
    sources = [c.source for c in SPLITS["train"]]
    multiturn = [c for c in SPLITS["train"] if len(c.user_turns()) > 1]
    assert len(multiturn) >= 30
    assert sources.count("handwritten:clarify") >= 15
    assert sources.count("handwritten:refuse") >= 15


@pytest.mark.parametrize("name", ["factual", "factual_dev"])
def test_factual_items_have_lower_case_answers(name):
    for item in data.load_factual(name):
        assert item["question"].endswith("?")
        assert item["accept"] and all(a == a.lower().strip() and a for a in item["accept"])


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("**Paris** is the capital.", "markdown or list marker"),
        ("- apples\n- pears.", "markdown or list marker"),
        ("1. Boil water.", "markdown or list marker"),
        ("See https://example.org for more.", "link"),
        ("Great idea \U0001F600.", "non-ASCII (emoji or symbols)"),
        ("It is 42 degrees.", "digits (numbers must be written as said)"),
        ("One. Two. Three. Four.", "more than 3 sentences"),
        ("Well", "does not end a sentence"),
    ],
)
def test_reply_problems_catch_each_rule(reply, problem):
    assert problem in data.reply_problems(reply)


def test_a_clean_reply_has_no_problems():
    assert data.reply_problems("Paris is the capital of France. It has about two million people.") == []


@pytest.mark.parametrize(
    "n, said",
    [(0, "zero"), (19, "nineteen"), (40, "forty"), (206, "two hundred and six"),
     (1440, "one thousand four hundred and forty"), (3005, "three thousand and five"), (7000, "seven thousand")],
)
def test_say_number(n, said):
    assert say_number(n) == said


def test_say_decimal():
    assert say_decimal(3.14159, 2) == "three point one four"
    assert say_decimal(8.0) == "eight"
