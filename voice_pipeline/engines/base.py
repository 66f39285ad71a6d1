"""The small protocols every STT, LLM and TTS engine implements.

A fake, a local model, a remote server and a fallback wrapper are interchangeable behind these.
Every method is async; engines that wrap blocking model code run both the call and the iteration
of its generator in a worker thread (see `voice_pipeline.threads`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Transcript:
    text: str
    final: bool
    audio_ms: float  # length of the audio this transcript covers
    superseded: bool = False  # a partial a batching STT dropped unrun (engines/stt_batch.py): no words decoded


@runtime_checkable
class SpeechToText(Protocol):
    name: str

    async def transcribe(self, audio_16k: np.ndarray, *, final: bool) -> Transcript:
        """Transcribe mono float32 audio at 16 kHz (the whole utterance so far)."""
        ...

    async def warm_up(self) -> None: ...


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]:
        """Yield the reply one token's text at a time. Closing the iterator cancels generation."""
        ...

    async def warm_up(self, system_prompt: str) -> None: ...


@runtime_checkable
class TextToSpeech(Protocol):
    name: str
    sample_rate_hz: int

    def synthesize(self, text: str, *, urgent: bool = False, first: bool = False) -> AsyncIterator[np.ndarray]:
        """Yield mono float32 audio at `sample_rate_hz` for one speakable piece of text. `urgent`:
        someone is waiting to hear it (a reply's first piece, or one its playback is about to
        need); other pieces have audio before them to play first, so an engine shared by sessions
        may serve urgent pieces ahead of them (reply/pace.py). `first`: the reply's first piece,
        whose first audio the listener waits for in silence: an engine that can may yield it a
        little at a time (Piper's windows, engines/piper_stream.py)."""
        ...

    async def warm_up(self) -> None: ...
