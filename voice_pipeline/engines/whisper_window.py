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

`transcribe_batch`: several utterances (other sessions' passes, stt_batch.py) in one encoder and
one decoder call, each window padded with silence to the longest.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        prefix = prefix.strip()
        prompt = self._model.get_prompt(self._tokenizer, [], without_timestamps=True, prefix=prefix or None)
        return self._decode([audio_16k], prompt, suppress_blank=not prefix)[0]

    def transcribe_batch(self, audios_16k: Sequence[np.ndarray]) -> list[str]:
        """One encoder call and one decoder call for several utterances (no prefix). Each window is
        padded with silence to the longest one's, so each transcript is exactly what `transcribe`
        gives for that audio with the extra silence appended (a longer margin, not a new model)."""
        prompt = self._model.get_prompt(self._tokenizer, [], without_timestamps=True)
        return self._decode(list(audios_16k), prompt, suppress_blank=True)

    def _decode(self, audios: list[np.ndarray], prompt: list[int], suppress_blank: bool) -> list[str]:
        import ctranslate2

        longest = max(len(audio) for audio in audios)
        features = [self._features(audio, longest - len(audio)) for audio in audios]
        window = np.ascontiguousarray(np.stack(features), dtype=np.float32)
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        caps = [len(prompt) + min(_max_new_tokens(audio), 448 - len(prompt)) for audio in audios]
        results = self._model.model.generate(
            encoded, [prompt] * len(audios), beam_size=self._beam_size, max_length=max(caps),
            suppress_blank=suppress_blank, suppress_tokens=self._suppressed,
        )
        # CTranslate2 returns the prompt's tokens too (the prefix included); special tokens are dropped.
        # In a batch the longest cap applies to all; each sequence is then cut at its own, so a
        # hallucinated loop stays bounded (only a pass that ran into its cap can differ from alone).
        return [self._text(result.sequences_ids[0][:cap]) for result, cap in zip(results, caps)]

    def _features(self, audio_16k: np.ndarray, extra_silence: int) -> np.ndarray:
        padded = np.concatenate([audio_16k.astype(np.float32), self._margin, np.zeros(extra_silence, np.float32)])
        features = self._model.feature_extractor(padded)
        frames = features.shape[-1] - (features.shape[-1] % 2)  # the encoder's convolution halves the frames
        return features[:, :frames]

    def _text(self, sequence: list[int]) -> str:
        tokens = [t for t in sequence if t < self._tokenizer.eot]
        return self._tokenizer.decode(cut_restart(tokens)).strip()


def _max_new_tokens(audio_16k: np.ndarray) -> int:
    return 10 + int(_TOKENS_PER_SECOND_LIMIT * len(audio_16k) / SAMPLE_RATE_HZ)


def cut_restart(tokens: list[int], min_repeat: int = 3) -> list[int]:
    """`tokens` up to where they start over: the shortest head h (at least `min_repeat` tokens) such
    that everything after it repeats the sequence's own beginning, for at least `min_repeat` tokens."""
    n = len(tokens)
    for head in range(min_repeat, n - min_repeat + 1):
        if tokens[head:] == tokens[: n - head]:
            return tokens[:head]
    return tokens
