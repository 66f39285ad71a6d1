"""Whole numbers written the way they are said ("two hundred and six"), for TTS-friendly replies."""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def say_number(n: int) -> str:
    """0 <= n < 1,000,000 in words, British-style "and" after the hundreds."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {say_number(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    if not rest:
        return f"{say_number(thousands)} thousand"
    joiner = " and " if rest < 100 else " "
    return f"{say_number(thousands)} thousand{joiner}{say_number(rest)}"


def say_decimal(value: float, places: int = 1) -> str:
    """3.5 -> "three point five"; whole values drop the point."""
    rounded = round(value, places)
    whole = int(rounded)
    if rounded == whole:
        return say_number(whole)
    digits = f"{rounded:.{places}f}".split(".")[1].rstrip("0")
    return say_number(whole) + " point " + " ".join(_ONES[int(d)] for d in digits)
