"""Dates and times said aloud: "what date is next friday", "what day is tomorrow", "how many days until
christmas", "what time will it be in 3 hours". Plain "what time is it" stays an instant template.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from voice_pipeline.routing.spoken import WEEKDAYS, clock_words, date_words
from voice_pipeline.spoken_numbers import say_value
from voice_pipeline.tools.registry import Tool, ToolContext, ToolResult, tool_from_function

_DAY_NAMES = "|".join(day.lower() for day in WEEKDAYS)
_HOLIDAYS = {"christmas": (12, 25), "christmas day": (12, 25), "christmas eve": (12, 24), "new year": (1, 1),
             "new years": (1, 1), "new years day": (1, 1), "new year's day": (1, 1), "halloween": (10, 31),
             "valentines day": (2, 14), "valentine's day": (2, 14), "new years eve": (12, 31)}
_HOLIDAY_NAMES = "|".join(sorted((re.escape(h) for h in _HOLIDAYS), key=len, reverse=True))
_RELATIVE = rf"(?:tomorrow|yesterday|the day after tomorrow|the day before yesterday|(?:next|this|last|on) (?:{_DAY_NAMES})" \
            rf"|(?:{_DAY_NAMES})|in \d+ (?:days?|weeks?)|\d+ (?:days?|weeks?) (?:from now|from today|ago))"
_DAY_FORMS = [re.compile(form) for form in (
    rf"what (?:is )?(?:the )?(?:date|day)(?: of the week)? (?:is|was|will it be|will be|is it)? ?(?P<when>{_RELATIVE})",
    rf"what (?:date|day)(?: of the week)? (?:is|was|will) (?P<when>{_RELATIVE}|{_HOLIDAY_NAMES})(?: be| this year)?",
    rf"(?:what is )?(?P<when>tomorrow|yesterday)s date",
    rf"when is (?P<when>(?:next|this) (?:{_DAY_NAMES}))",
    rf"what (?:is|was) the date (?P<when>{_RELATIVE})",
)]
_UNTIL = re.compile(rf"how (?:many|long) (?:days )?(?:is it |are there )?(?:until|till|to|before) (?P<target>{_HOLIDAY_NAMES}|"
                    rf"(?:next )?(?:{_DAY_NAMES}))")
_LATER = re.compile(r"what time (?:will it be|is it going to be|would it be) in (?P<n>\d+) (?P<unit>hours?|minutes?)"
                    r"(?: and (?P<m>\d+) minutes?)?")


def parse(said: str, context: ToolContext) -> dict[str, Any] | None:
    for form in _DAY_FORMS:
        match = form.fullmatch(said)
        if match:
            return {"question": "date", "when": match["when"]}
    match = _UNTIL.fullmatch(said)
    if match:
        return {"question": "days_until", "when": match["target"]}
    match = _LATER.fullmatch(said)
    if match:
        minutes = int(match["n"]) * (60 if match["unit"].startswith("hour") else 1) + int(match["m"] or 0)
        return {"question": "time_in", "when": f"{minutes} minutes"}
    return None


def _weekday(name: str) -> int:
    return [day.lower() for day in WEEKDAYS].index(name)


def resolve_day(when: str, today: date) -> date | None:
    """'next friday', 'tomorrow', 'in 3 days', '2 weeks ago' -> a date ('next X' is the coming X, never today)."""
    when = when.removeprefix("on ")
    fixed = {"tomorrow": 1, "yesterday": -1, "the day after tomorrow": 2, "the day before yesterday": -2}
    if when in fixed:
        return today + timedelta(days=fixed[when])
    match = re.fullmatch(r"(?:in (\d+) (days?|weeks?))|(?:(\d+) (days?|weeks?) (from now|from today|ago))", when)
    if match:
        n = int(match[1] or match[3])
        unit = match[2] or match[4]
        days = n * (7 if unit.startswith("week") else 1)
        return today + timedelta(days=-days if match[5] == "ago" else days)
    match = re.fullmatch(rf"(?:(next|this|last) )?({_DAY_NAMES})", when)
    if match:
        target = _weekday(match[2])
        ahead = (target - today.weekday()) % 7
        if match[1] == "last":
            return today - timedelta(days=(today.weekday() - target) % 7 or 7)
        if match[1] == "this":
            return today + timedelta(days=ahead)
        return today + timedelta(days=ahead or 7)
    if when in _HOLIDAYS:
        month, day = _HOLIDAYS[when]
        this_year = date(today.year, month, day)
        return this_year if this_year >= today else date(today.year + 1, month, day)
    return None


def _days(n: int) -> str:
    return "one day" if n == 1 else f"{say_value(n)} days"


_HOLIDAY_SAID = {"christmas": "Christmas", "christmas day": "Christmas Day", "christmas eve": "Christmas Eve",
                 "new year": "New Year", "new years": "New Year", "new years day": "New Year's Day",
                 "new year's day": "New Year's Day", "halloween": "Halloween", "valentines day": "Valentine's Day",
                 "valentine's day": "Valentine's Day", "new years eve": "New Year's Eve"}


def _say_when(when: str) -> str:
    """'next friday' -> 'next Friday', 'in 10 days' -> 'in ten days'."""
    words = [say_value(int(w)) if w.isdigit() else w.capitalize() if w in _DAY_NAMES.split("|") else w
             for w in when.removeprefix("on ").split()]
    return " ".join(words)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def dates_and_times(question: Annotated[str, "date | days_until | time_in"],
                    when: Annotated[str, "e.g. 'next friday', 'tomorrow', 'in 3 days', 'christmas', '90 minutes'"],
                    context: ToolContext) -> ToolResult:
    """Answer calendar questions from the local clock: the date of a day, days until a day, the time later."""
    now = context.now
    if question == "time_in":
        minutes = int(when.split()[0])
        hours, rest = divmod(minutes, 60)
        span = " and ".join(part for part in (
            (f"{say_value(hours)} hour{'s' if hours != 1 else ''}" if hours else ""),
            (f"{say_value(rest)} minute{'s' if rest != 1 else ''}" if rest else "")) if part) or "no time"
        return ToolResult(f"In {span} it will be {clock_words(now + timedelta(minutes=minutes))}.")
    holiday = when.removeprefix("next ")
    target = resolve_day(holiday if holiday in _HOLIDAYS else when, now.date())
    if target is None:
        return ToolResult("I'm not sure which day you mean.")
    if question == "days_until":
        days = (target - now.date()).days
        name = _HOLIDAY_SAID.get(holiday) or _say_when(when)
        return ToolResult("That's today!" if days == 0 else f"{_sentence(_days(days))} until {name}.")
    said = _HOLIDAY_SAID.get(when) or _say_when(when)
    if re.fullmatch(rf"(?:next |this |last |on )?(?:{_DAY_NAMES})", when):  # the weekday is in the question already
        day_said = date_words(target).split(", ", 1)[1]
    else:
        day_said = date_words(target)
    if when.startswith("in ") or when.endswith("from now") or when.endswith("from today"):
        return ToolResult(f"{_sentence(said)} it will be {day_said}.")
    if when.endswith("ago"):
        return ToolResult(f"{_sentence(said)} it was {day_said}.")
    return ToolResult(f"{_sentence(said)} {'was' if target < now.date() else 'is'} {day_said}.")


TOOL: Tool = tool_from_function(dates_and_times, parse=parse)
