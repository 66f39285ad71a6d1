"""Instant intents: template answers with an injected clock, actions, and None for no match."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from voice_pipeline.routing.instant import InstantAction, InstantContext, answer_instant
from voice_pipeline.routing.model import ROUTES, Route
from voice_pipeline.routing.spoken import clock_words, date_words, number_words, ordinal_words
from voice_pipeline.routing.training import load_split

SUNDAY_3_10_PM = datetime(2026, 11, 22, 15, 10)


def ctx(now: datetime = SUNDAY_3_10_PM, last_reply: str | None = None) -> InstantContext:
    return InstantContext(now=now, last_reply=last_reply)


@pytest.mark.parametrize(
    ("hour", "minute", "said"),
    [
        (15, 10, "ten past three in the afternoon"),
        (8, 45, "quarter to nine in the morning"),
        (11, 50, "ten to twelve in the morning"),
        (13, 30, "half past one in the afternoon"),
        (9, 7, "nine oh seven in the morning"),
        (23, 59, "eleven fifty-nine at night"),
        (19, 0, "seven o'clock in the evening"),
        (0, 0, "midnight"),
        (12, 0, "twelve noon"),
    ],
)
def test_clock_words(hour: int, minute: int, said: str) -> None:
    assert clock_words(datetime(2026, 1, 1, hour, minute)) == said


def test_number_and_date_words() -> None:
    assert number_words(0) == "zero"
    assert number_words(42) == "forty-two"
    assert number_words(2026) == "two thousand twenty-six"
    assert [ordinal_words(n) for n in (1, 2, 3, 12, 21, 30, 31)] == [
        "first", "second", "third", "twelfth", "twenty-first", "thirtieth", "thirty-first"]
    assert date_words(date(2026, 11, 22)) == "Sunday, the twenty-second of November"
    with pytest.raises(ValueError):
        number_words(10_000)


@pytest.mark.parametrize("text", ["what time is it", "Hey, what time is it now?", "whats the time", "time please"])
def test_time_uses_the_injected_clock(text: str) -> None:
    answer = answer_instant(text, ctx())
    assert answer is not None and answer.intent == "time"
    assert answer.text == "It's ten past three in the afternoon."
    later = answer_instant(text, ctx(now=datetime(2026, 11, 22, 8, 45)))
    assert later is not None and later.text == "It's quarter to nine in the morning."


def test_date_and_weekday() -> None:
    assert answer_instant("what's the date", ctx()).text == "It's Sunday, the twenty-second of November."
    assert answer_instant("is it monday today", ctx()).text == "No, it's Sunday."
    assert answer_instant("is today sunday", ctx()).text == "Yes, it's Sunday."


def test_stop_cancels_silently() -> None:
    for text in ("stop", "be quiet", "never mind", "okay stop talking please", "cancel that"):
        answer = answer_instant(text, ctx())
        assert answer is not None and answer.action is InstantAction.CANCEL and answer.text == ""


def test_repeat_returns_the_last_reply() -> None:
    answer = answer_instant("sorry, could you say that again?", ctx(last_reply="Paris is the capital."))
    assert answer is not None and answer.action is InstantAction.REPEAT
    assert answer.text == "Paris is the capital."
    nothing_yet = answer_instant("say that again", ctx(last_reply=None))
    assert nothing_yet is not None and nothing_yet.action is None and nothing_yet.text


@pytest.mark.parametrize(
    ("text", "intent", "action"),
    [
        ("thank you so much", "thanks", None),
        ("good evening", "greeting", None),
        ("goodbye", "goodbye", InstantAction.END),
        ("turn the volume up", "volume_up", InstantAction.VOLUME_UP),
        ("lower the volume", "volume_down", InstantAction.VOLUME_DOWN),
        ("slow down", "slower", InstantAction.SLOWER),
        ("what can you do", "capabilities", None),
        ("yes please", "yes", InstantAction.CONFIRM),
        ("nope", "no", InstantAction.DENY),
    ],
)
def test_intents_and_actions(text: str, intent: str, action: InstantAction | None) -> None:
    answer = answer_instant(text, ctx())
    assert answer is not None and (answer.intent, answer.action) == (intent, action)


def test_greeting_names_the_real_part_of_day() -> None:
    assert answer_instant("good morning", ctx()).text.startswith("Good afternoon")


@pytest.mark.parametrize(
    "text",
    ["thanks and can you explain how solar panels work", "what time does the sun set", "stop the war in my head",
     "tell me a joke", ""],
)
def test_no_template_returns_none(text: str) -> None:
    assert answer_instant(text, ctx()) is None


def test_no_small_or_large_heldout_utterance_is_answered_instantly() -> None:
    texts, labels = load_split("heldout")
    # Tools (arithmetic, units, timers) do claim some "small" turns, on purpose: tests/unit/test_tools.py
    answered = [(t, answer_instant(t, ctx())) for t, y in zip(texts, labels) if ROUTES[y] is not Route.INSTANT]
    wrongly_answered = [t for t, answer in answered if answer is not None and not answer.intent.startswith("tool:")]
    assert wrongly_answered == []


def test_most_instant_heldout_utterances_have_a_template() -> None:
    texts, labels = load_split("heldout")
    instant = [t for t, y in zip(texts, labels) if ROUTES[y] is Route.INSTANT]
    unanswered = [t for t in instant if answer_instant(t, ctx()) is None]
    assert len(unanswered) <= len(instant) // 10, unanswered


def test_yes_or_no_to_the_assistants_question_goes_to_the_model() -> None:
    asked = ctx(last_reply="Would you like the recipe too?")
    assert answer_instant("yes please", asked) is None
    assert answer_instant("nope", asked) is None
    assert answer_instant("what time is it", asked) is not None
    assert answer_instant("yes please", ctx(last_reply="Here it is.")).action is InstantAction.CONFIRM


@pytest.mark.parametrize(("text", "intent"), [("thanks mate", "thanks"), ("good stuff thanks", "thanks"),
                                               ("bye for today", "goodbye"), ("hold on", "stop"), ("wait", "stop")])
def test_more_ways_to_say_it(text: str, intent: str) -> None:
    answer = answer_instant(text, ctx())
    assert answer is not None and answer.intent == intent
