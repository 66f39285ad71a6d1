"""Whisper decoding with the encoder window fitted to the utterance, and an optional forced prefix.

faster-whisper's `transcribe` pads every input to a 30 s log-mel window, so the encoder costs the
same for a two-second question as for thirty seconds of speech; on a small CPU that fixed cost is
most of a final pass. CTranslate2's encoder accepts shorter inputs (positions past the input are
simply unused), which is what whisper.cpp's `audio_ctx` does too. This decoder runs the encoder on
the utterance plus a margin of real silence, then decodes greedily (or with the configured beam)
with the same prompt and suppressed tokens `transcribe` would use. Whisper was trained on 30 s
windows, so the accuracy cost is measured (`voice-pipeline eval final-pass`), not assumed.

With a fitted window whisper often does not end after the utterance but starts it again ("What is
the capital of France? What is the capital of"); a continuation that repeats the transcript's own
start is cut (`cut_restart`).

`prefix`: text forced as the start of the transcript (a stable partial); the decoder then runs one
batched step over those tokens instead of one step per token. The returned text includes it.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE_HZ = 16_000
WINDOW_LIMIT_S = 29.0  # longer audio falls back to faster-whisper's own 30 s windows
_TOKENS_PER_SECOND_LIMIT = 8  # fast speech is ~4 tokens/s; the cap stops a hallucinated loop early


class FittedWindowDecoder:
    def __init__(self, model, beam_size: int = 1, margin_s: float = 1.0) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = model  # a faster_whisper.WhisperModel
        self._beam_size = beam_size
        self._margin = np.zeros(int(SAMPLE_RATE_HZ * margin_s), dtype=np.float32)
        self._tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
        self._suppressed = get_suppressed_tokens(self._tokenizer, (-1,))

    @staticmethod
    def fits(audio_16k: np.ndarray) -> bool:
        return len(audio_16k) / SAMPLE_RATE_HZ <= WINDOW_LIMIT_S

    def transcribe(self, audio_16k: np.ndarray, prefix: str = "") -> str:
        import ctranslate2

        padded = np.concatenate([audio_16k.astype(np.float32), self._margin])
        features = self._model.feature_extractor(padded)
        frames = features.shape[-1] - (features.shape[-1] % 2)  # the encoder's convolution halves the frames
        window = np.ascontiguousarray(features[None, :, :frames], dtype=np.float32)
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        prefix = prefix.strip()
        prompt = self._model.get_prompt(self._tokenizer, [], without_timestamps=True, prefix=prefix or None)
        max_new = 10 + int(_TOKENS_PER_SECOND_LIMIT * len(audio_16k) / SAMPLE_RATE_HZ)
        result = self._model.model.generate(
            encoded, [prompt], beam_size=self._beam_size, max_length=min(len(prompt) + max_new, 448),
            suppress_blank=not prefix, suppress_tokens=self._suppressed,
        )[0]
        # CTranslate2 returns the prompt's tokens too (the prefix included); special tokens are dropped.
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        return self._tokenizer.decode(cut_restart(tokens)).strip()


def cut_restart(tokens: list[int], min_repeat: int = 3) -> list[int]:
    """`tokens` up to where they start over: the shortest head h (at least `min_repeat` tokens) such
    that everything after it repeats the sequence's own beginning, for at least `min_repeat` tokens."""
    n = len(tokens)
    for head in range(min_repeat, n - min_repeat + 1):
        if tokens[head:] == tokens[: n - head]:
            return tokens[:head]
    return tokens
