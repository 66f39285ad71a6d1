"""Numbers written the way they are said ("two hundred and six"), for replies that TTS reads well.

One implementation for the instant answers (times, dates: no "and", as in "two thousand
twenty-six") and the voice fine-tuning data (amounts: "two hundred and six").
"""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def say_number(n: int, with_and: bool = True, limit: int = 1_000_000) -> str:
    """0 <= n < limit in words; `with_and`: "two hundred and six" rather than "two hundred six"."""
    if not 0 <= n < limit:
        raise ValueError(f"out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    and_ = " and " if with_and else " "
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f"{and_}{say_number(rest, with_and)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    if not rest:
        return f"{say_number(thousands, with_and)} thousand"
    joiner = and_ if rest < 100 else " "
    return f"{say_number(thousands, with_and)} thousand{joiner}{say_number(rest, with_and)}"


def say_decimal(value: float, places: int = 1) -> str:
    """3.5 -> "three point five"; whole values drop the point."""
    rounded = round(value, places)
    whole = int(rounded)
    if rounded == whole:
        return say_number(whole)
    digits = f"{rounded:.{places}f}".split(".")[1].rstrip("0")
    return say_number(whole) + " point " + " ".join(_ONES[int(d)] for d in digits)
