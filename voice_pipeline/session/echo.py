"""Tells the assistant's own voice leaking back into the input (speakerphone, a line without echo
cancellation) from the user's: the input is correlated with the reply audio the outbox sent.

The outbox reports every frame it sends with the time the client will start playing it
(`played`). The echo of that audio reaches the input later by an unknown delay (the client's
playback and capture buffers, the room, the network): `is_echo` compares the last `window_ms`
of input with the reference audio at every delay from `min_delay_ms` to `max_delay_ms` (one FFT
cross-correlation, normalized per delay). A window that is mostly a delayed, scaled copy of what
was played correlates near 1; the user's own voice, alone or over the echo (double talk: the
user's voice is louder than its echo), correlates far less, so a real barge-in is not masked.

A single-tap model: it holds for a line or a digital mix; a reverberant room spreads the echo over
many delays and lowers the correlation, so a strong room echo may still be taken for speech.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from voice_pipeline.app.settings import VadSettings
    from voice_pipeline.session.outbox import Outbox

RATE_HZ = 16_000


class EchoGate:
    def __init__(self, *, window_ms: float = 256.0, min_delay_ms: float = 0.0, max_delay_ms: float = 600.0,
                 threshold: float = 0.5, keep_ms: float = 3000.0, on_echo: Callable[[], None] | None = None) -> None:
        self.window_ms, self.threshold, self._on_echo = window_ms, threshold, on_echo
        self.min_delay_s, self.max_delay_s = min_delay_ms / 1000.0, max_delay_ms / 1000.0
        self._keep_s = keep_ms / 1000.0
        self._frames: collections.deque[tuple[float, np.ndarray]] = collections.deque()  # (play start t, 16 kHz)
        self._input: collections.deque[np.ndarray] = collections.deque()  # the input's last second
        self._input_end = 0  # input samples so far
        self.last_score = 0.0  # the last window's best normalized correlation (for tests and the bench)

    @classmethod
    def for_session(cls, vad: VadSettings, outbox: Outbox, on_echo: Callable[[], None]) -> EchoGate | None:
        """A session's gate, fed by its outbox (None when `vad.echo_gate` is off)."""
        if not vad.echo_gate:
            return None
        gate = cls(threshold=vad.echo_threshold, on_echo=on_echo)
        outbox.on_audio_sent = gate.played
        return gate

    @property
    def window_samples(self) -> int:
        return int(RATE_HZ * self.window_ms / 1000.0)

    def played(self, samples: np.ndarray, rate_hz: int, play_start_t: float) -> None:
        """The outbox sent `samples` (at `rate_hz`), which the client plays from `play_start_t`."""
        if len(samples) == 0:
            return
        if rate_hz != RATE_HZ:
            n_out = max(1, round(len(samples) * RATE_HZ / rate_hz))
            positions = np.arange(n_out, dtype=np.float64) * (rate_hz / RATE_HZ)
            samples = np.interp(positions, np.arange(len(samples)), samples.astype(np.float64))
        self._frames.append((play_start_t, np.asarray(samples, dtype=np.float32)))
        while self._frames and self._frames[0][0] < play_start_t - self._keep_s:
            self._frames.popleft()

    def heard(self, samples_16k: np.ndarray) -> None:
        """The next input audio (16 kHz), as the VAD sees it."""
        self._input.append(samples_16k)
        self._input_end += len(samples_16k)
        while sum(len(c) for c in self._input) - len(self._input[0]) > RATE_HZ:
            self._input.popleft()

    def gated(self, probability: float, end_ms: float, end_t: float) -> float:
        """A VAD frame's speech probability, or 0 (silence) when the window ending there is echo."""
        if not self.check(end_ms, end_t):
            return probability
        if self._on_echo is not None:
            self._on_echo()
        return 0.0

    def check(self, end_ms: float, end_t: float) -> bool:
        """Whether the input's window ending at stream position `end_ms` (which arrived at `end_t`) is echo."""
        if not self.active(end_t):
            return False
        kept = np.concatenate(self._input) if self._input else np.zeros(0, np.float32)
        end = len(kept) - (self._input_end - round(end_ms * RATE_HZ / 1000.0))
        return self.is_echo(kept[max(0, end - self.window_samples) : max(0, end)], end_t)

    def active(self, t: float) -> bool:
        """Some reply audio may still be echoing at time `t`."""
        if not self._frames:
            return False
        last_t, last = self._frames[-1]
        return t - (last_t + len(last) / RATE_HZ) < self.max_delay_s

    def is_echo(self, window: np.ndarray, window_end_t: float) -> bool:
        """Whether `window` (16 kHz input whose last sample arrived at `window_end_t`) is mostly echo."""
        self.last_score = self.score(window, window_end_t)
        return self.last_score >= self.threshold

    def score(self, window: np.ndarray, window_end_t: float) -> float:
        x = np.asarray(window, dtype=np.float64)
        x = x - x.mean() if len(x) else x  # speech has no DC; a constant offset must not correlate
        n = len(x)
        x_energy = float(np.dot(x, x))
        if n == 0 or x_energy <= 1e-9 or not self.active(window_end_t):
            return 0.0
        start_t = window_end_t - n / RATE_HZ - self.max_delay_s  # the reference at the longest delay
        span = n + int(RATE_HZ * (self.max_delay_s - self.min_delay_s))
        ref = self._reference(start_t, span)
        ref -= ref.mean()
        ref_sq = np.concatenate(([0.0], np.cumsum(ref * ref)))
        lags = span - n + 1
        ref_energy = ref_sq[n : n + lags] - ref_sq[:lags]
        if float(ref_energy.max()) <= 1e-9:
            return 0.0
        size = 1 << int(np.ceil(np.log2(span + n)))
        corr = np.fft.irfft(np.conj(np.fft.rfft(x, size)) * np.fft.rfft(ref, size), size)[:lags]
        ncc = corr / np.sqrt(x_energy * ref_energy + 1e-12)
        return float(max(0.0, ncc.max()))

    def _reference(self, start_t: float, span: int) -> np.ndarray:
        """The played audio from `start_t`, `span` samples long, silence where nothing played."""
        out = np.zeros(span, dtype=np.float64)
        for play_t, frame in self._frames:
            offset = round((play_t - start_t) * RATE_HZ)
            lo, hi = max(0, offset), min(span, offset + len(frame))
            if lo < hi:
                out[lo:hi] = frame[lo - offset : hi - offset]
        return out
