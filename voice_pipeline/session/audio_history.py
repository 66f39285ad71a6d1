"""A bounded record of the input stream at 16 kHz, addressable by stream position in ms."""

from __future__ import annotations

import collections

import numpy as np

RATE_HZ = 16_000


class AudioHistory:
    def __init__(self, max_seconds: float = 30.0) -> None:
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._start_sample = 0  # absolute index of the first kept sample
        self._end_sample = 0  # absolute index one past the last sample
        self._max_samples = int(max_seconds * RATE_HZ)

    @property
    def end_ms(self) -> float:
        return 1000.0 * self._end_sample / RATE_HZ

    def append(self, samples: np.ndarray) -> None:
        if len(samples) == 0:
            return
        self._chunks.append(samples)
        self._end_sample += len(samples)
        while self._end_sample - self._start_sample - len(self._chunks[0]) >= self._max_samples:
            self._start_sample += len(self._chunks.popleft())

    def slice_ms(self, start_ms: float, end_ms: float | None = None) -> np.ndarray:
        """Samples between two stream positions (clamped to what is still kept)."""
        start = max(self._start_sample, int(start_ms * RATE_HZ / 1000))
        end = self._end_sample if end_ms is None else min(self._end_sample, int(end_ms * RATE_HZ / 1000))
        if end <= start or not self._chunks:
            return np.zeros(0, dtype=np.float32)
        whole = np.concatenate(list(self._chunks))
        return whole[start - self._start_sample : end - self._start_sample]
