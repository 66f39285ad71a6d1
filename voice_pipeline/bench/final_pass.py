"""`voice-pipeline eval final-pass`: what each way of running the final STT pass costs and loses.

Every corpus item is synthesized and mixed exactly as the benchmark plays it; the final pass sees
the speech from 300 ms before its start to 100 ms after its end, as the server's pass does. A
partial is simulated where a session's last partial would end, `partial_lead_ms` before the end of
speech; its words except the last `unstable_words` are the "stable prefix".

Strategies (each timed `repeats` times per item, the median kept; WER against the corpus text):
- full: faster-whisper's `transcribe`, the 30 s encoder window (the server's default before v2);
- fitted: the encoder window fitted to the utterance plus a margin of silence;
- fitted_prefix: fitted, with the stable prefix forced as the transcript's start;
- full_prefix: `transcribe(prefix=...)`, the 30 s window with the stable prefix forced;
- fitted_tail: only the audio from 1 s before the partial's end is decoded (fitted), and its words
  are joined to the stable prefix where they overlap.
The partial's own cost is not counted: it ran while the user was still speaking.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from voice_pipeline.bench.corpus import Corpus, SpokenItem, build
from voice_pipeline.bench.stats import normalize_text, word_error_rate

RATE_HZ = 16_000
LEAD_S, TAIL_S = 0.3, 0.1
TAIL_OVERLAP_S = 1.0
STRATEGIES = ("full", "fitted", "fitted_prefix", "full_prefix", "fitted_tail")


@dataclass(frozen=True)
class Case:
    reference: str
    audio: np.ndarray  # the final pass's audio
    partial_audio: np.ndarray  # what the last partial heard


def cases(spoken: list[SpokenItem], partial_lead_ms: float) -> list[Case]:
    out = []
    for item in spoken:
        start = max(0, int((item.speech_start_s - LEAD_S) * RATE_HZ))
        end = int((item.speech_end_s + TAIL_S) * RATE_HZ)
        partial_end = max(start + RATE_HZ // 2, int((item.speech_end_s - partial_lead_ms / 1000) * RATE_HZ))
        out.append(Case(item.item.text, item.audio_16k[start:end], item.audio_16k[start:partial_end]))
    return out


class Runner:
    def __init__(self, model_name: str, threads: int, margin_s: float, unstable_words: int) -> None:
        from faster_whisper import WhisperModel

        from voice_pipeline.engines.registry import whisper_model_dir
        from voice_pipeline.engines.whisper_window import FittedWindowDecoder

        self.model = WhisperModel(whisper_model_dir(model_name), device="cpu", compute_type="int8", cpu_threads=threads)
        self.fitted = FittedWindowDecoder(self.model, margin_s=margin_s)
        self.unstable_words = unstable_words

    def full(self, audio: np.ndarray, prefix: str = "") -> str:
        segments, _ = self.model.transcribe(
            audio, language="en", beam_size=1, without_timestamps=True, condition_on_previous_text=False,
            vad_filter=False, prefix=prefix or None,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def stable_prefix(self, case: Case) -> str:
        words = self.fitted.transcribe(case.partial_audio).split()
        return " ".join(words[: max(0, len(words) - self.unstable_words)]).rstrip(".,?!")

    def run(self, strategy: str, case: Case, prefix: str) -> str:
        if strategy == "full":
            return self.full(case.audio)
        if strategy == "fitted":
            return self.fitted.transcribe(case.audio)
        if strategy == "fitted_prefix":
            return self.fitted.transcribe(case.audio, prefix=prefix)
        if strategy == "full_prefix":
            return self.full(case.audio, prefix=prefix)
        if strategy == "fitted_tail":
            tail_start = max(0, len(case.partial_audio) - int(TAIL_OVERLAP_S * RATE_HZ))
            return join_overlap(prefix, self.fitted.transcribe(case.audio[tail_start:]))
        raise ValueError(strategy)


def join_overlap(head: str, tail: str) -> str:
    """head + tail, dropping the tail's first words where they repeat the head's last words (the
    longest such overlap, compared without case or punctuation)."""
    head_words, tail_words = head.split(), tail.split()
    key = lambda words: normalize_text(" ".join(words))  # noqa: E731
    for size in range(min(len(head_words), len(tail_words)), 0, -1):
        if key(head_words[-size:]) == key(tail_words[:size]):
            return " ".join(head_words + tail_words[size:])
    return " ".join(head_words + tail_words)


def evaluate(model_name: str = "tiny.en", threads: int = 2, repeats: int = 3, margin_s: float = 2.0,
             partial_lead_ms: float = 700.0, unstable_words: int = 2, max_items: int | None = None) -> dict:
    corpus = Corpus.load()
    items = list(corpus.items)[:max_items] if max_items else list(corpus.items)
    runner = Runner(model_name, threads, margin_s, unstable_words)
    runner.full(np.zeros(RATE_HZ, np.float32))  # warm-up
    runner.fitted.transcribe(np.zeros(RATE_HZ, np.float32))
    texts: dict[str, list[tuple[str, str]]] = {s: [] for s in STRATEGIES}
    times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for case in cases(build(corpus, items), partial_lead_ms):
        prefix = runner.stable_prefix(case)
        for strategy in STRATEGIES:
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                text = runner.run(strategy, case, prefix)
                runs.append(1000 * (time.perf_counter() - started))
            times[strategy].append(statistics.median(runs))
            texts[strategy].append((case.reference, text))
    results = {}
    for strategy in STRATEGIES:
        ms = sorted(times[strategy])
        results[strategy] = {
            "wer": word_error_rate(texts[strategy])["wer"],
            "p50_ms": round(statistics.median(ms), 1),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
            "mean_ms": round(statistics.fmean(ms), 1),
            "worst": [h for r, h in texts[strategy] if normalize_text(r) != normalize_text(h)][:3],
        }
    return {
        "settings": {"model": model_name, "threads": threads, "repeats": repeats, "margin_s": margin_s,
                     "partial_lead_ms": partial_lead_ms, "unstable_words": unstable_words, "items": len(items),
                     "corpus": f"v{corpus.version}"},
        "strategies": results,
    }


def table(report: dict) -> str:
    lines = [f"{'strategy':<14} {'WER':>6} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8}"]
    for name, row in report["strategies"].items():
        lines.append(f"{name:<14} {row['wer']:>6} {row['p50_ms']:>8} {row['p90_ms']:>8} {row['mean_ms']:>8}")
    return "\n".join(lines)
