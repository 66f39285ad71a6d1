"""Semantic end-of-turn: how likely the small LLM finds it that the words so far end the user's turn.

The transcript so far is put in the ChatML user slot, left open (`<|im_start|>user\\n{text}`), and the
model's next-token distribution is read: the probability mass on `<|im_end|>` and on the sentence
ends `.`, `?`, `!` (ASR text here is lowercase and unpunctuated, so the model often "closes" a
complete utterance with a punctuation mark before `<|im_end|>`). Its log is mapped to a probability
by a logistic calibration (2 parameters, fitted on the training split, models/eot/calibration.json).

One small llama.cpp context of its own, lent to one worker thread at a time (a `ThreadOwnedPool`
of one: the context is free again only when the thread using it has returned). The tokens it last evaluated stay in
its KV cache: a partial transcript that extends the previous one evaluates only the new tokens.
The session hands the probability to `TurnTaking.hint_end_of_turn`.
"""

from __future__ import annotations

import asyncio
import logging
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from voice_pipeline.engines.registry import MODELS_DIR, smollm2_gguf
from voice_pipeline.threads import ThreadOwnedPool

log = logging.getLogger("voice_pipeline.session.end_of_turn")

DATA_VERSION = "v1"
EOT_DIR = MODELS_DIR / "eot"
CALIBRATION_PATH = EOT_DIR / "calibration.json"
PROMPT_PREFIX = "<|im_start|>user\n"
END_TEXTS = ("<|im_end|>", ".", "?", "!")
NEUTRAL_PROBABILITY = 0.5  # no words yet: the default endpoint silence


def normalize(text: str) -> str:
    """ASR text as the calibration saw it: lowercase, no punctuation but apostrophes, single spaces."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Calibration:
    """p = 1 / (1 + exp(-(weight * log_prob + bias))), log_prob = log P(end token | text so far)."""

    weight: float
    bias: float
    data_version: str = DATA_VERSION

    def probability(self, log_prob: float) -> float:
        z = self.weight * log_prob + self.bias
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    @classmethod
    def load(cls, path: Path = CALIBRATION_PATH) -> Calibration:
        data = json.loads(Path(path).read_text())
        return cls(weight=data["weight"], bias=data["bias"], data_version=data["data_version"])

    def save(self, path: Path = CALIBRATION_PATH, **extra: object) -> None:
        Path(path).write_text(json.dumps({**asdict(self), **extra}, indent=2) + "\n")


class EndLogProb(Protocol):
    """Synchronous, one thread at a time: log P(an end token next | text)."""

    def end_log_prob(self, text: str) -> float: ...


class LlamaEndLogProb:
    """llama.cpp over SmolLM2, with the previous prompt's tokens kept in the KV cache."""

    def __init__(self, model_path: str = "", n_ctx: int = 512, n_threads: int = 1) -> None:
        import llama_cpp

        self.n_threads = n_threads or (os.cpu_count() or 1)
        self._llm = llama_cpp.Llama(
            model_path=model_path or smollm2_gguf(), n_ctx=n_ctx, n_batch=n_ctx,
            n_threads=self.n_threads, n_threads_batch=self.n_threads, n_gpu_layers=0, verbose=False,
        )
        self._n_ctx = n_ctx
        self._n_vocab = self._llm.n_vocab()
        self._prefix = self._tokenize(PROMPT_PREFIX)
        self._end_ids = sorted({self._tokenize(text)[0] for text in END_TEXTS})
        self._tokens: list[int] = []
        self.evaluated_tokens = 0  # how many tokens were run through the model, all calls together

    def _tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode(), add_bos=False, special=True)

    def prompt_tokens(self, text: str) -> list[int]:
        body = self._tokenize(normalize(text)) if text.strip() else []
        room = self._n_ctx - len(self._prefix) - 1
        return self._prefix + body[-room:]  # a very long turn keeps its last words

    def end_log_prob(self, text: str) -> float:
        import numpy as np

        tokens = self.prompt_tokens(text)
        keep = min(common_prefix_len(self._tokens, tokens), len(tokens) - 1)
        self._llm.n_tokens = keep  # eval() drops the KV cache past this point
        self._tokens = []  # if eval fails half-way, nothing is trusted next time
        self._llm.eval(tokens[keep:])
        self._tokens = tokens
        self.evaluated_tokens += len(tokens) - keep
        raw_logits = self._llm._ctx.get_logits()  # type: ignore[no-untyped-call]  # llama-cpp-python is untyped
        logits = np.ctypeslib.as_array(raw_logits, shape=(self._n_vocab,)).astype(np.float64)
        top = logits.max()
        log_norm = top + math.log(float(np.exp(logits - top).sum()))
        return float(np.logaddexp.reduce(logits[self._end_ids]) - log_norm)

    def forget(self) -> None:
        """Drop the cached prompt (the next call evaluates everything): for latency measurements."""
        self._tokens = []


class EndOfTurnScorer:
    """`await probability(text)`: the calibrated probability that `text` is a whole user turn."""

    def __init__(self, model: EndLogProb, calibration: Calibration) -> None:
        self.model = model
        self.calibration = calibration
        self._model = ThreadOwnedPool([model], thread_name_prefix="eot")

    @classmethod
    def load(cls, model_path: str = "", n_threads: int = 1) -> EndOfTurnScorer:
        return cls(LlamaEndLogProb(model_path, n_threads=n_threads), Calibration.load())

    async def log_prob(self, text: str) -> float:
        # One evaluation at a time (they share the KV cache), whatever happens to the caller.
        return await self._model.run(lambda model: model.end_log_prob(text))

    async def probability(self, text: str) -> float:
        if not normalize(text):
            return NEUTRAL_PROBABILITY
        return self.calibration.probability(await self.log_prob(text))

    def close(self) -> None:
        self._model.close()


class LatestTextScorer:
    """One turn's end-of-turn scoring: the newest text wins, texts never queue up.

    `submit(text)` on each partial (and on the pause's early-final transcript). While a score runs,
    newer texts replace each other; when it finishes, the newest is scored next. Each result goes to
    `on_probability(text, p)` and is kept in `latest`. `cancel()` when the turn ends or is dropped.
    """

    def __init__(self, scorer: EndOfTurnScorer, on_probability: Callable[[str, float | None], None]) -> None:
        self._scorer, self._on_probability = scorer, on_probability
        self._pending: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.latest: float | None = None

    def submit(self, text: str) -> None:
        self._pending = text
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending is not None:
            text, self._pending = self._pending, None
            try:
                self.latest = await self._scorer.probability(text)
            except Exception:  # a failing scorer must not hold the turn: say "no hint"
                log.warning("end-of-turn scoring failed", exc_info=True)
                self._on_probability(text, None)
                continue
            self._on_probability(text, self.latest)

    def cancel(self) -> None:
        self._pending = None
        if self._task is not None:
            self._task.cancel()
