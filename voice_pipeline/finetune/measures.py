"""What the voice evaluation measures in one reply: pure functions over its text and its tokens."""

from __future__ import annotations

import re
from typing import Sequence

FIRST_PIECE_TOKENS = 20
MIN_COMMA_WORDS = 3

_MARKDOWN = re.compile(r"[*#`|]|\[[^\]]*\]\(|^\s*(?:[-+•]\s|\d+[.)]\s)", re.MULTILINE)
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F]")
_LINK = re.compile(r"https?://|www\.", re.IGNORECASE)
_END = re.compile(r"[.!?]")


def first_piece_end(text: str) -> int | None:
    """Index just past the first speakable piece: the first . ! ? or a comma after >= 3 words."""
    for index, char in enumerate(text):
        if _END.fullmatch(char) and any(c.isalnum() for c in text[:index]):
            return index + 1
        if char == "," and len(text[:index].split()) >= MIN_COMMA_WORDS:
            return index + 1
    return None


def first_piece_within(pieces: Sequence[str], finished: bool, limit: int = FIRST_PIECE_TOKENS) -> bool:
    """True when the first speakable piece is complete within `limit` tokens. A reply cut off by
    max_tokens without any piece boundary does not count as complete."""
    text = ""
    for count, piece in enumerate(pieces[:limit], start=1):
        text += piece
        if first_piece_end(text) is not None:
            return True
    return finished and len(pieces) <= limit and bool(text.strip())


def formatting(reply: str) -> list[str]:
    """Which of markdown, list markers, emoji, links the reply contains."""
    found = []
    if _MARKDOWN.search(reply):
        found.append("markdown_or_list")
    if _EMOJI.search(reply):
        found.append("emoji")
    if _LINK.search(reply):
        found.append("link")
    return found


def word_count(reply: str) -> int:
    return len(reply.split())


def normalize_answer(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower().replace("-", " ")).split())


def is_correct(reply: str, accept: Sequence[str]) -> bool:
    """A factual reply is correct when any accepted answer appears in it as whole words."""
    said = f" {normalize_answer(reply)} "
    return any(f" {normalize_answer(answer)} " in said for answer in accept)
