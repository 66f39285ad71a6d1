"""The text end-of-turn engine: SmolLM2 through llama.cpp reads P(an end token next | words so far).

The pure parts (prompt normalization, the calibration, the per-turn "latest text wins" scheduler)
live in `session/end_of_turn.py`; this module holds the native loading. One small llama.cpp
context of its own, lent to one worker thread at a time (a `ThreadOwnedPool` of one: the context
is free again only when the thread using it has returned). The tokens it last evaluated stay in
its KV cache: a partial transcript that extends the previous one evaluates only the new tokens.
"""

from __future__ import annotations

import math
import os

from voice_pipeline.engines.registry import smollm2_gguf
from voice_pipeline.session.end_of_turn import (
    NEUTRAL_PROBABILITY,
    PROMPT_PREFIX,
    Calibration,
    EndLogProb,
    common_prefix_len,
    normalize,
)
from voice_pipeline.threads import ThreadOwnedPool

END_TEXTS = ("<|im_end|>", ".", "?", "!")


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
        raw_logits = self._llm._ctx.get_logits()
        logits = np.ctypeslib.as_array(raw_logits, shape=(self._n_vocab,)).astype(np.float64)
        top = logits.max()
        log_norm = top + math.log(float(np.exp(logits - top).sum()))
        return float(np.logaddexp.reduce(logits[self._end_ids]) - log_norm)

    def forget(self) -> None:
        """Drop the cached prompt (the next call evaluates everything): for latency measurements."""
        self._tokens = []


class EndOfTurnScorer:
    """`await probability(text)`: the calibrated probability that `text` is a whole user turn.

    Satisfies `session.end_of_turn.TextTurnScorer`, the protocol the session sees as `Engines.eot`."""

    name = "smollm2-eot"

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
