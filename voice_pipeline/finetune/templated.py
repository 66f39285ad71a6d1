"""Templated training examples: arithmetic and unit conversions, prompts with digits (as speech
recognition writes them), replies with the numbers written as said. Deterministic: fixed seed.

v1 drew its arithmetic from two- and three-digit numbers and converted units to long decimals; the
adapter trained on it learned to answer "how many" questions with long made-up numbers ("one hundred
and forty-eight days in a week"). A 135M model cannot compute either, so v2 keeps only arithmetic
on the small numbers people ask aloud."""

from __future__ import annotations

import operator
import random
import re

from voice_pipeline.spoken_numbers import say_decimal, say_number

SEED = 6

Pair = tuple[str, str]


_OPERATIONS = {"times": operator.mul, "plus": operator.add, "minus": operator.sub, "divided by": operator.floordiv}
# Each draw: (count, operation, how the question starts, ranges). A range is (low, high) or, for the
# second operand, a function of the first. Division draws the divisor and quotient, then multiplies.
_V1_DRAWS = (
    (30, "times", "What's", (11, 99), (2, 12)),
    (20, "plus", "What is", (20, 500), (20, 500)),
    (15, "minus", "What's", (100, 900), lambda a: (10, a - 1)),
    (15, "divided by", "What is", (2, 12), (3, 40)),
)
_V2_DRAWS = (
    (15, "times", "What's", (2, 12), (2, 10)),
    (15, "plus", "What is", (1, 20), (1, 20)),
    (10, "minus", "What's", (5, 30), lambda a: (1, a)),
)


def _arithmetic(rng: random.Random, draws) -> list[Pair]:
    pairs: list[Pair] = []
    for count, word, opening, first, second in draws:
        for _ in range(count):
            x = rng.randint(*first)
            y = rng.randint(*(second(x) if callable(second) else second))
            a, b = (x * y, x) if word == "divided by" else (x, y)
            result = _OPERATIONS[word](a, b)
            pairs.append((f"{opening} {a} {word} {b}?", f"{say_number(a)} {word} {say_number(b)} is {say_number(result)}."))
    return pairs


def _conversions(rng: random.Random) -> list[Pair]:
    pairs: list[Pair] = []
    for miles in rng.sample(range(2, 60), 10):
        km = miles * 1.609344
        pairs.append((f"Convert {miles} miles to kilometers.", f"{say_number(miles)} miles is about {say_decimal(km)} kilometers."))
    for kg in rng.sample(range(2, 120), 10):
        lb = kg * 2.20462
        pairs.append((f"How many pounds is {kg} kilos?", f"{say_number(kg)} kilograms is about {say_decimal(lb)} pounds."))
    for celsius in rng.sample(range(1, 45), 10):
        fahrenheit = celsius * 9 / 5 + 32
        pairs.append((
            f"Convert {celsius} Celsius to Fahrenheit.",
            f"{say_number(celsius)} degrees Celsius is about {say_decimal(fahrenheit)} degrees Fahrenheit.",
        ))
    for minutes in rng.sample(range(75, 600, 5), 10):
        hours, rest = divmod(minutes, 60)
        said = f"{say_number(hours)} hour{'s' if hours > 1 else ''}" + (f" and {say_number(rest)} minutes" if rest else "")
        pairs.append((f"How many hours is {minutes} minutes?", f"{say_number(minutes)} minutes is {said}."))
    return pairs


def templated_pairs(exclude_prompts: set[str], version: str = "v2") -> list[Pair]:
    """(prompt, reply) pairs (about 120 in v1, 40 in v2), none whose normalized prompt is in
    `exclude_prompts`; from v2 on a prompt also counts as excluded when its digits, said as words,
    give an excluded prompt ("What is 2 plus 2?" against "What is two plus two?")."""
    rng = random.Random(SEED)
    pairs = _arithmetic(rng, _V1_DRAWS) + _conversions(rng) if version == "v1" else _arithmetic(rng, _V2_DRAWS)
    seen: set[str] = set()
    kept: list[Pair] = []
    for prompt, reply in pairs:
        key = normalize_prompt(prompt)
        said = normalize_prompt(re.sub(r"\d+", lambda m: say_number(int(m.group())), prompt))
        if key in exclude_prompts or key in seen or (version != "v1" and said in exclude_prompts):
            continue
        seen.add(key)
        kept.append((prompt, reply[0].upper() + reply[1:]))
    return kept


def normalize_prompt(text: str) -> str:
    spaced = text.lower().replace("-", " ")
    return " ".join("".join(c for c in spaced if c.isalnum() or c.isspace()).split())
