"""Arithmetic said aloud: "what is 17 times 23", "15 percent of 80", "square root of 81", "divide 100 by 8".

The parser accepts a whole utterance that is one arithmetic expression (after "what is", "can you
work out", ...), so "what is 5" or "what is the 3rd planet" are not claimed. The answer repeats
the question in words and gives the result as the TTS should say it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from voice_pipeline.spoken_numbers import say_value
from voice_pipeline.tools.registry import Tool, ToolContext, ToolResult, tool_from_function
from voice_pipeline.tools.said import NUMBER, number

_QUESTION = re.compile(
    r"^(?:(?:can|could|would) you (?:please )?(?:tell me |work out |calculate |compute |figure out |do |solve )?"
    r"|(?:do you know |tell me |calculate |compute |work out |figure out |solve |quick math |math )"
    r"|(?:what|how much) (?:is|are|does|do|would be|will be)(?: the answer to| the result of)? "
    r"|what do you get (?:for |if you (?:do )?|when you )?|what)"
)
_ENDING = re.compile(r"(?: (?:equal|equals|make|makes|come to|comes to|give you|give me|is|be|in total))+$")
_PHRASES = [("multiplied by", "times"), ("divided by", "over"), ("to the power of", "power"), ("square root of", "root"),
            ("percent of", "percentof"), ("the", ""), ("x", "times"), ("into", "times")]
_VERBS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"(?:add|the sum of|sum of) ({NUMBER}) (?:and|to|plus) ({NUMBER})"), "{0} plus {1}"),
    (re.compile(rf"(?:subtract|take away|take) ({NUMBER}) from ({NUMBER})"), "{1} minus {0}"),
    (re.compile(rf"(?:multiply) ({NUMBER}) (?:by|and|with) ({NUMBER})|(?:the )?product of ({NUMBER}) and ({NUMBER})"),
     "{0} times {1}"),
    (re.compile(rf"divide ({NUMBER}) (?:by|into) ({NUMBER})"), "{0} over {1}"),
    (re.compile(rf"(?:the )?difference between ({NUMBER}) and ({NUMBER})"), "{0} minus {1}"),
    (re.compile(rf"half (?:of )?({NUMBER})"), "{0} over 2"),
    (re.compile(rf"(?:double|twice) ({NUMBER})"), "{0} times 2"),
]
_SAY = {"plus": "plus", "minus": "minus", "times": "times", "over": "divided by", "power": "to the power of",
        "squared": "squared", "cubed": "cubed", "root": "the square root of", "percentof": "percent of"}
_LIMIT = 1e15


class _Unsayable(ValueError):
    pass


def parse(said: str, _context: ToolContext | None = None) -> dict[str, Any] | None:
    """A canonical utterance -> {"expression": "17 times 23"}, or None if it is not only arithmetic."""
    body = said
    while True:
        stripped = _QUESTION.sub("", body, count=1).strip()
        if stripped == body:
            break
        body = stripped
    body = _ENDING.sub("", body).strip()
    for pattern, template in _VERBS:
        match = pattern.fullmatch(body)
        if match:
            body = template.format(*[g for g in match.groups() if g is not None])
            break
    words = [w for w in body.split()]
    text = " ".join(words)
    for phrase, token in _PHRASES:
        text = re.sub(rf"\b{phrase}\b", token, text)
    tokens = text.split()
    if not any(t in _SAY for t in tokens) or not all(t in _SAY or _is_number(t) for t in tokens):
        return None
    try:
        _Parser(tokens).parse()
    except (ValueError, ZeroDivisionError, OverflowError):
        if "over" not in tokens:
            return None  # not well formed; a division by zero is still a question for us
    return {"expression": " ".join(tokens)}


def _is_number(token: str) -> bool:
    return re.fullmatch(r"\d+(?:\.\d+)?", token) is not None


class _Parser:
    """expr := term (plus|minus term)*; term := factor (times|over factor)*; factor := unary (power unary | squared | cubed)*;
    unary := minus unary | root unary | NUMBER percentof unary | NUMBER"""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i = tokens, 0

    def parse(self) -> float:
        value = self._expr()
        if self.i != len(self.tokens):
            raise ValueError("trailing words")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError("expression ends early")
        self.i += 1
        return token

    def _expr(self) -> float:
        value = self._term()
        while self._peek() in ("plus", "minus"):
            value = value + self._term() if self._take() == "plus" else value - self._term()
        return value

    def _term(self) -> float:
        value = self._factor()
        while self._peek() in ("times", "over"):
            if self._take() == "times":
                value *= self._factor()
            else:
                value /= self._factor()  # ZeroDivisionError is reported by the tool
        return value

    def _factor(self) -> float:
        value = self._unary()
        while self._peek() in ("power", "squared", "cubed"):
            op = self._take()
            exponent = self._unary() if op == "power" else 2.0 if op == "squared" else 3.0
            if abs(exponent) > 64:
                raise OverflowError("exponent too large")
            value = math.pow(value, exponent)
        return value

    def _unary(self) -> float:
        token = self._take()
        if token == "minus":
            return -self._unary()
        if token == "root":
            value = self._unary()
            if value < 0:
                raise ValueError("square root of a negative number")
            return math.sqrt(value)
        if not _is_number(token):
            raise ValueError(f"expected a number, got {token}")
        if self._peek() == "percentof":
            self._take()
            return float(token) / 100.0 * self._unary()
        return float(token)


def _say_expression(tokens: list[str]) -> str:
    return " ".join(_SAY.get(t) or say_value(float(t), places=6) for t in tokens)


def calculate(expression: Annotated[str, "arithmetic in words, e.g. '17 times 23' or '15 percentof 80'"]) -> ToolResult:
    """Exact arithmetic: plus, minus, times, divided by, powers, square roots and percentages."""
    tokens = expression.split()
    said = _say_expression(tokens)
    said = said[0].upper() + said[1:]
    try:
        value = _Parser(tokens).parse()
    except ZeroDivisionError:
        return ToolResult(f"{said} has no answer: you can't divide by zero.")
    except (ValueError, OverflowError):
        return ToolResult("I couldn't work that one out.")
    if not math.isfinite(value) or abs(value) >= _LIMIT:
        return ToolResult(f"{said} is too large a number for me to say.")
    exact = abs(value - round(value, 2)) < 1e-9
    return ToolResult(f"{said} is {'' if exact else 'about '}{say_value(value)}.")


TOOL: Tool = tool_from_function(calculate, parse=parse)
__all__ = ["TOOL", "calculate", "parse", "number"]
