"""Hashed n-gram features for the router: word uni+bigrams and char 3-5-grams, numpy only.

Hashing uses zlib.crc32 (fixed across runs and machines), never Python's salted `hash()`.
A text becomes a sparse row: sorted unique column indices and L2-normalised weights.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

N_FEATURES = 1 << 16
CHAR_NGRAMS = (3, 4, 5)
_NON_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, squeeze spaces: the shape ASR text arrives in."""
    text = _NON_WORD.sub(" ", text.lower().replace("\u2019", "'"))
    return _SPACES.sub(" ", text).strip()


def ngrams(text: str) -> list[str]:
    words = normalize(text).split()
    grams = [f"w:{w}" for w in words]
    padded = ["<s>", *words, "</s>"]
    grams += [f"b:{a} {b}" for a, b in zip(padded, padded[1:])]
    joined = f" {' '.join(words)} "
    for n in CHAR_NGRAMS:
        grams += [f"c:{joined[i:i + n]}" for i in range(len(joined) - n + 1)]
    return grams


def featurize(text: str, n_features: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """Return (columns int64, values float32) of one text's sparse, L2-normalised feature row."""
    counts: dict[int, float] = {}
    for gram in ngrams(text):
        column = zlib.crc32(gram.encode("utf-8")) % n_features
        counts[column] = counts.get(column, 0.0) + 1.0
    if not counts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    columns = np.fromiter(sorted(counts), np.int64, len(counts))
    values = np.log1p(np.array([counts[c] for c in columns], np.float32))
    return columns, values / np.float32(np.linalg.norm(values))


def featurize_batch(texts: list[str], n_features: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack rows as (row ids, columns, values): a COO sparse matrix."""
    rows, columns, values = [], [], []
    for row_id, text in enumerate(texts):
        cols, vals = featurize(text, n_features)
        rows.append(np.full(len(cols), row_id, np.int64))
        columns.append(cols)
        values.append(vals)
    return np.concatenate(rows), np.concatenate(columns), np.concatenate(values)
