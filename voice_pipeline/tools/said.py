"""What the user said, in the one shape the tools' parsers read: lowercase words, digits, no symbols.

"What's 15% of 80?" -> "what is 15 percent of 80"; "seventeen times twenty-three" -> "17 times 23".
The parsers then match whole utterances, so a question that merely contains a number is not theirs.
"""

from __future__ import annotations

import re

from voice_pipeline.spoken_numbers import words_to_digits

_SYMBOLS = [
    (re.compile(r"(?<=\d),(?=\d{3}\b)"), ""),  # 1,000 -> 1000
    (re.compile(r"[\u2019`]"), "'"),
    (re.compile(r"%"), " percent "),
    (re.compile(r"°\s*c\b", re.I), " degrees celsius "),
    (re.compile(r"°\s*f\b", re.I), " degrees fahrenheit "),
    (re.compile(r"°"), " degrees "),
    (re.compile(r"(?<=\d)\s*[x×*]\s*(?=\d)"), " times "),
    (re.compile(r"(?<=\d)\s*[÷/]\s*(?=\d)"), " divided by "),
    (re.compile(r"(?<=\d)\s*\+\s*(?=\d)"), " plus "),
    (re.compile(r"(?<=\d)\s+[-\u2212]\s+(?=\d)"), " minus "),
    (re.compile(r"(?<=\d)\s*\^\s*(?=\d)"), " to the power of "),
    (re.compile(r"(?<![\w.])[-\u2212](?=\d)"), "minus "),
    (re.compile(r"(?<=\d)(?=[a-z])"), " "),  # 10km -> 10 km
]
_NOT_KEPT = re.compile(r"[^a-z0-9.' ]+")
_END_DOTS = re.compile(r"\.(?!\d)")
_CONTRACTIONS = [("what's", "what is"), ("whats", "what is"), ("it's", "it is"), ("i'm", "i am"), ("how's", "how is"),
                 ("what'll", "what will"), ("that's", "that is"), ("let's", "let us")]
_LEAD = re.compile(r"^(?:(?:hey|hi|ok|okay|so|um+|uh+|er|well|please|quick question|assistant|alright)\s+)+")
_TAIL = re.compile(r"(?:\s+(?:please|thanks|thank you|for me|now|then|again|exactly|roughly))+$")


def canonical(text: str) -> str:
    """Lowercase words and digits, symbols said as words, fillers around the request dropped."""
    said = text.lower()
    for pattern, replacement in _SYMBOLS:
        said = pattern.sub(replacement, said)
    said = _END_DOTS.sub(" ", _NOT_KEPT.sub(" ", said))
    words = []
    for word in said.split():
        word = word.strip("'")
        for short, long in _CONTRACTIONS:
            if word == short:
                word = long
                break
        else:
            word = word[:-2] + "s" if word.endswith("'s") else word  # tomorrow's -> tomorrows
        words.append(word)
    said = words_to_digits(" ".join(words))
    said = _TAIL.sub("", _LEAD.sub("", said)).strip()
    return said


NUMBER = r"(?:minus )?\d+(?:\.\d+)?"


def number(text: str) -> float:
    """A NUMBER match as a value ("minus 3.5" -> -3.5)."""
    return -float(text[6:]) if text.startswith("minus ") else float(text)
