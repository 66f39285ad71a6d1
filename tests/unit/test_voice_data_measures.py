"""The voice evaluation's measures on hand-made replies and token streams."""

from __future__ import annotations

import pytest

from voice_pipeline.finetune import measures


@pytest.mark.parametrize(
    "text, end",
    [("Paris. It is big.", 6), ("Yes, it is.", 11), ("Sure thing, for how long?", 25),
     ("Well, the capital of France, is Paris", 28), ("no boundary yet", None), ("...", None)],
)
def test_first_piece_end(text, end):
    assert measures.first_piece_end(text) == end


def test_first_piece_within_counts_tokens():
    pieces = ["Paris"] + [" is"] * 18 + ["."]
    assert measures.first_piece_within(pieces, finished=True)
    assert not measures.first_piece_within(["Paris"] + [" is"] * 19 + ["."], finished=True)


def test_short_finished_reply_without_punctuation_is_complete():
    assert measures.first_piece_within(["Eight"], finished=True)
    assert not measures.first_piece_within(["Eight"], finished=False)
    assert not measures.first_piece_within([], finished=True)


@pytest.mark.parametrize(
    "reply, found",
    [("**Paris**", ["markdown_or_list"]), ("Pack:\n- a tent\n- a stove", ["markdown_or_list"]),
     ("Steps:\n1. Boil water", ["markdown_or_list"]), ("Have fun \U0001F600", ["emoji"]),
     ("See https://example.org", ["link"]), ("Paris is the capital, about two million people.", [])],
)
def test_formatting(reply, found):
    assert measures.formatting(reply) == found


@pytest.mark.parametrize(
    "reply, accept, correct",
    [("The capital is Paris.", ["paris"], True), ("There are twenty-four hours.", ["twenty four", "24"], True),
     ("It has 24 hours.", ["twenty four", "24"], True), ("Fourteen.", ["four"], False),
     ("It's H2O.", ["h2o"], True), ("Berlin, I think.", ["paris"], False)],
)
def test_is_correct(reply, accept, correct):
    assert measures.is_correct(reply, accept) is correct


def test_word_count():
    assert measures.word_count("  one two\nthree ") == 3
