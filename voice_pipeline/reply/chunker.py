"""Cut streaming LLM text into speakable pieces: the first as early as a clause allows.

Pure and incremental: push text deltas, get back pieces that are ready to be synthesized.
- A sentence end (. ! ? or a newline, then white space) always closes a piece.
- A clause end (, ; : or a dash, then white space) closes the *first* piece once it has
  `first_min_words` words, and a later piece once it has `min_words` words.
- A first piece still running at `first_max_words` words is cut before the last word so far that
  starts a phrase (and, because, in, with...) at least five words in (past a short subject: not
  "The tallest mountain, in the world..."), and ends in a comma so the voice pauses as at a clause
  end: a long first sentence no longer makes the listener wait for all of its words and their
  synthesis.
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
# Words that begin a phrase a speaker may pause before ("of" and "to" bind too tightly to cut).
_PHRASE_STARTS = {"and", "but", "or", "so", "because", "when", "while", "where", "which", "who", "if",
                  "than", "in", "on", "at", "from", "with", "without", "into", "during", "for", "after",
                  "before", "until", "since", "by", "like"}
_NUMBER_WORDS = {"hundred", "thousand", "million", "billion", "trillion"}  # "three hundred and five"
_PHRASE_CUT_MIN_WORDS = 5


def clean_for_speech(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("a link", text)
    text = _EMOJI.sub("", text)
    text = _BULLET.sub(r"\1", text)
    return _MARKUP.sub("", text)


class SpeakableChunker:
    def __init__(self, first_min_words: int = 3, min_words: int = 8, max_words: int = 40,
                 first_max_words: int = 0) -> None:
        """`first_max_words` 0: a first piece is cut only where a clause or sentence ends."""
        self.first_min_words = first_min_words
        self.first_max_words = first_max_words
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
        pause = False
        if cut is None and self._pieces_out == 0 and self.first_max_words:
            cut = self._phrase_cut()
            pause = cut is not None
        if cut is None:
            return None
        raw, self._buffer = self._buffer[:cut], self._buffer[cut:]
        piece = _normalise(clean_for_speech(raw))
        if pause and piece and piece[-1].isalnum():
            piece += ","
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

    def _phrase_cut(self) -> int | None:
        """Where to cut a first piece that has reached `first_max_words` whole words with no clause
        end: before the last phrase-starting word so far, or nowhere yet."""
        words = [(m.start(), m.group().lower().strip(_CLOSERS)) for m in re.finditer(r"\S+(?=\s)", self._buffer)]
        if len(words) < self.first_max_words:
            return None
        for index in range(len(words) - 1, _PHRASE_CUT_MIN_WORDS - 1, -1):
            start, word = words[index]
            if word in _PHRASE_STARTS and not (word == "and" and words[index - 1][1] in _NUMBER_WORDS):
                return start
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
