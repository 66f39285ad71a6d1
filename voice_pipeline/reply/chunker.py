"""Cut streaming LLM text into speakable pieces: the first as early as a clause allows.

Pure and incremental: push text deltas, get back pieces that are ready to be synthesized.
- A sentence end (. ! ? or a newline, then white space) always closes a piece.
- A clause end (, ; : or a dash, then white space) closes the *first* piece once it has
  `first_min_words` words, and a later piece once it has `min_words` words.
- A piece that reaches `max_words` is cut at the last space.
Markdown marks, list bullets and emoji are removed: they cannot be spoken.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "no", "jr", "sr", "prof"}
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\u200d\ufe0f\u2b50\u2b55]+"
)
_MARKUP = re.compile(r"[*_`#~>|]+")
_BULLET = re.compile(r"(^|\n)\s*(?:[-•]|\d+[.)])\s+")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_SENTENCE_END = ".!?"
_CLAUSE_END = ",;:\u2014\u2013"
_CLOSERS = "*_`\"')]\u201d\u2019"


def clean_for_speech(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("a link", text)
    text = _EMOJI.sub("", text)
    text = _BULLET.sub(r"\1", text)
    return _MARKUP.sub("", text)


class SpeakableChunker:
    def __init__(self, first_min_words: int = 3, min_words: int = 8, max_words: int = 40) -> None:
        self.first_min_words = first_min_words
        self.min_words = min_words
        self.max_words = max_words
        self._buffer = ""
        self._pieces_out = 0

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        pieces = []
        while (piece := self._next_piece()) is not None:
            pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        piece = _normalise(clean_for_speech(self._buffer))
        self._buffer = ""
        if _speakable(piece):
            self._pieces_out += 1
            return [piece]
        return []

    def _next_piece(self) -> str | None:
        cut = self._find_cut()
        if cut is None:
            return None
        raw, self._buffer = self._buffer[:cut], self._buffer[cut:]
        piece = _normalise(clean_for_speech(raw))
        if not _speakable(piece):
            return self._next_piece() if self._buffer else None
        self._pieces_out += 1
        return piece

    def _find_cut(self) -> int | None:
        text = self._buffer
        need = self.first_min_words if self._pieces_out == 0 else self.min_words
        for i, char in enumerate(text[:-1]):
            if char == "\n":
                return i + 1
            end = i + 1
            while end < len(text) and text[end] in _CLOSERS:  # "**Sure!** Then" ends after the **
                end += 1
            if end >= len(text) or not text[end].isspace():
                continue
            if char in _SENTENCE_END and not _is_abbreviation(text, i):
                return end
            if char in _CLAUSE_END and _word_count(text[: i + 1]) >= need:
                return end
        if _word_count(text) > self.max_words:
            space = text.rstrip().rfind(" ")
            return space + 1 if space > 0 else None
        return None


def _is_abbreviation(text: str, dot_index: int) -> bool:
    if text[dot_index] != ".":
        return False
    word = re.split(r"\s", text[:dot_index])[-1].lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _word_count(text: str) -> int:
    return len(text.split())


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)
