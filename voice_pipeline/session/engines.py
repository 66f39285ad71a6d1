"""The engines a session uses, shared by every session of a worker (built by app/compose.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voice_pipeline.engines.base import LanguageModel, SpeechToText, TextToSpeech
from voice_pipeline.reply.answer import Answerer
from voice_pipeline.reply.phrasebook import Phrasebook
from voice_pipeline.session.end_of_turn import EndOfTurnModel
from voice_pipeline.session.load import StageLoad


class VoiceActivity(Protocol):
    """A session's VAD stream: 16 kHz audio of any length in, one speech probability per 32 ms window
    out, calls awaited in turn (engines/vad_batch.py, or engines/vad.py's ThreadedVad)."""

    async def process(self, audio_16k: np.ndarray) -> list[float]: ...

    def close(self) -> None:
        """The session ended: release the stream (idempotent)."""


@dataclass
class Engines:
    stt: SpeechToText | None  # None: switched off (capabilities.stt)
    llm: LanguageModel | None  # None: switched off (capabilities.llm)
    tts: TextToSpeech | None
    make_vad: Callable[[], VoiceActivity]  # one per session, closed when the session ends
    system_prompt: str
    answerer: Answerer | None = None  # None: every turn goes to `llm`, no routing
    eot: EndOfTurnModel | None = None  # None: silence alone ends turns (session/end_of_turn.py)
    speculate: bool = True  # prepare replies during the endpoint wait (settings.vad.speculate, resolved)
    phrases: Phrasebook | None = None  # pre-synthesized fixed phrases
    load: StageLoad | None = None  # what the worker's stages are busy with (None: never shed)
