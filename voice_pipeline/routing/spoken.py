"""Numbers, clock times and dates written the way they are said ("ten past three")."""

from __future__ import annotations

from datetime import date, datetime

from voice_pipeline.spoken_numbers import TENS, say_number

_ORDINAL_ONES = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                 "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
                 "seventeenth", "eighteenth", "nineteenth"]
_ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def number_words(n: int) -> str:
    """0..9999 as words: 'twenty-one', 'two thousand twenty-six'."""
    return say_number(n, with_and=False, limit=10_000)


def ordinal_words(n: int) -> str:
    """1..31 as ordinal words: 'first', 'twenty-second', 'thirtieth'."""
    if n < 20:
        return _ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    return _ORDINAL_TENS[n] if not ones and n in _ORDINAL_TENS else f"{TENS[tens]}-{_ORDINAL_ONES[ones]}"


def _hour_word(hour_24: int) -> str:
    return number_words(hour_24 % 12 or 12)


def _part_of_day(hour_24: int) -> str:
    if 5 <= hour_24 < 12:
        return "in the morning"
    if 12 <= hour_24 < 18:
        return "in the afternoon"
    if 18 <= hour_24 < 22:
        return "in the evening"
    return "at night"


def clock_words(now: datetime) -> str:
    """'ten past three in the afternoon', 'quarter to nine in the morning', 'midnight'."""
    hour, minute = now.hour, now.minute
    if minute == 0 and hour in (0, 12):
        return "midnight" if hour == 0 else "twelve noon"
    next_hour = (hour + 1) % 24
    if minute == 0:
        said = f"{_hour_word(hour)} o'clock"
    elif minute == 15:
        said = f"quarter past {_hour_word(hour)}"
    elif minute == 30:
        said = f"half past {_hour_word(hour)}"
    elif minute == 45:
        said = f"quarter to {_hour_word(next_hour)}"
    elif minute % 5 == 0 and minute < 30:
        said = f"{number_words(minute)} past {_hour_word(hour)}"
    elif minute % 5 == 0:
        said = f"{number_words(60 - minute)} to {_hour_word(next_hour)}"
    else:
        said = f"{_hour_word(hour)} {'oh ' if minute < 10 else ''}{number_words(minute)}"
    return f"{said} {_part_of_day(hour)}"


def date_words(day: date) -> str:
    """'Sunday, the twenty-second of November'."""
    return f"{WEEKDAYS[day.weekday()]}, the {ordinal_words(day.day)} of {MONTHS[day.month - 1]}"
