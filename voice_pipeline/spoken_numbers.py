"""Numbers as they are said, both ways: "two hundred and six" for replies, 206 from ASR words.

One implementation for the instant answers and tools (no "and", as in "two thousand twenty-six"),
the voice fine-tuning data (amounts: "two hundred and six"), and the tools' reading of what the
user said ("seventeen times twenty three" -> "17 times 23").
"""

from __future__ import annotations

import math
import re

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((1_000_000_000_000, "trillion"), (1_000_000_000, "billion"), (1_000_000, "million"))


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
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            head = f"{say_number(high, with_and, limit=1000)} {name}"
            return head if not rest else f"{head}{and_ if rest < 100 else ' '}{say_number(rest, with_and, limit=scale)}"
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


def say_value(value: float, places: int = 2) -> str:
    """Any finite number as a tool answer says it: "minus three point two five", "one million"."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    rounded = round(value, places)
    if rounded < 0:
        return "minus " + say_value(-rounded, places)
    if rounded >= 1_000_000_000_000_000:
        raise ValueError(f"out of range: {value}")
    whole = int(rounded)
    said = say_number(whole, with_and=False, limit=1_000_000_000_000_000)
    fraction = f"{rounded:.{places}f}".split(".")[1].rstrip("0") if places else ""
    return said + (" point " + " ".join(_ONES[int(d)] for d in fraction) if fraction else "")


# --- reading numbers said in words -------------------------------------------------------------

_WORD_VALUES = {word: i for i, word in enumerate(_ONES)} | {word: 10 * i for i, word in enumerate(TENS) if i >= 2}
_WORD_VALUES |= {"oh": 0, "a": 1, "an": 1}  # "a hundred", "an hour" is not a number: see _number_at
_MULTIPLIERS = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = re.compile(r"\b(?:" + "|".join(sorted(set(_WORD_VALUES) | set(_MULTIPLIERS) | {"point", "and"},
                                                    key=len, reverse=True)) + r")\b")


def _number_at(words: list[str], i: int) -> tuple[float, int] | None:
    """The number spelled out from words[i] on, and how many words it took; None if there is none."""
    total, current, j, seen = 0, 0, i, False
    while j < len(words):
        word = words[j]
        if word in ("a", "an", "oh"):
            nxt = words[j + 1] if j + 1 < len(words) else ""
            if word != "oh" and nxt not in _MULTIPLIERS or word == "oh" and not seen:
                break  # "a" alone is an article; "oh" counts only inside a number ("one oh five")
        if word in _WORD_VALUES:
            word_value = _WORD_VALUES[word]
            if seen and current % 100 and word_value < 100 and (word_value >= 10 or current % 10):
                break  # "twenty three four" is two numbers
            if seen and current % 10 == 0 and current % 100 and word_value >= 10:
                break
            current += word_value
            seen = True
        elif word in _MULTIPLIERS and seen:
            scale = _MULTIPLIERS[word]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * scale
                current = 0
        elif word == "and" and seen and j + 1 < len(words) and words[j + 1] in _WORD_VALUES and (total or current >= 100):
            pass  # "two hundred and six"
        else:
            break
        j += 1
    if not seen:
        return None
    value: float = total + current
    if j + 1 < len(words) and words[j] == "point" and words[j + 1] in _ONES[:10]:
        digits = ""
        j += 1
        while j < len(words) and words[j] in _ONES[:10]:
            digits += str(_ONES.index(words[j]))
            j += 1
        value = float(f"{int(value)}.{digits}")
    return value, j - i


def words_to_digits(text: str) -> str:
    """Spelled-out numbers in lowercase text become digits: "seventeen times twenty three" -> "17 times 23"."""
    words = text.replace("-", " ").split() if _NUMBER_WORD.search(text) else text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        found = _number_at(words, i)
        if found is None:
            out.append(words[i])
            i += 1
            continue
        value, taken = found
        out.append(f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value)))
        i += taken
    return " ".join(out)
