"""Templated training examples: arithmetic and unit conversions, prompts with digits (as speech
recognition writes them), replies with the numbers written as said. Deterministic: fixed seed.

v1 drew its arithmetic from two- and three-digit numbers and converted units to long decimals; the
adapter trained on it learned to answer "how many" questions with long made-up numbers ("one hundred
and forty-eight days in a week"). A 135M model cannot compute either, so v2 keeps only arithmetic
on the small numbers people ask aloud."""

from __future__ import annotations

import random
import re

from ..spoken_numbers import say_decimal, say_number

SEED = 6

Pair = tuple[str, str]


def _small_arithmetic(rng: random.Random) -> list[Pair]:
    pairs: list[Pair] = []
    for _ in range(15):
        a, b = rng.randint(2, 12), rng.randint(2, 10)
        pairs.append((f"What's {a} times {b}?", f"{say_number(a)} times {say_number(b)} is {say_number(a * b)}."))
    for _ in range(15):
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        pairs.append((f"What is {a} plus {b}?", f"{say_number(a)} plus {say_number(b)} is {say_number(a + b)}."))
    for _ in range(10):
        a = rng.randint(5, 30)
        b = rng.randint(1, a)
        pairs.append((f"What's {a} minus {b}?", f"{say_number(a)} minus {say_number(b)} is {say_number(a - b)}."))
    return pairs


def _arithmetic(rng: random.Random) -> list[Pair]:
    pairs: list[Pair] = []
    for _ in range(30):
        a, b = rng.randint(11, 99), rng.randint(2, 12)
        pairs.append((f"What's {a} times {b}?", f"{say_number(a)} times {say_number(b)} is {say_number(a * b)}."))
    for _ in range(20):
        a, b = rng.randint(20, 500), rng.randint(20, 500)
        pairs.append((f"What is {a} plus {b}?", f"{say_number(a)} plus {say_number(b)} is {say_number(a + b)}."))
    for _ in range(15):
        a = rng.randint(100, 900)
        b = rng.randint(10, a - 1)
        pairs.append((f"What's {a} minus {b}?", f"{say_number(a)} minus {say_number(b)} is {say_number(a - b)}."))
    for _ in range(15):
        b, q = rng.randint(2, 12), rng.randint(3, 40)
        a = b * q
        pairs.append((f"What is {a} divided by {b}?", f"{say_number(a)} divided by {say_number(b)} is {say_number(q)}."))
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
    pairs = _arithmetic(rng) + _conversions(rng) if version == "v1" else _small_arithmetic(rng)
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
