"""Which end-of-turn model the server loads, from `vad.end_of_turn`: audio, audio+text, text or silence.

`Engines.eot` is what the session sees (session/end_of_turn.py): an `AudioTurnScorer` (Smart Turn),
a `TextTurnScorer` (SmolLM2), both in one object for `audio+text`, or None for the silence rule.
A model that cannot be loaded (the pipecat-ai wheel missing) is logged and the next signal down is
used, so a broken install degrades to the silence rule instead of refusing to serve.
"""

from __future__ import annotations

import logging

import numpy as np

from voice_pipeline.app.settings import Settings, switch_on
from voice_pipeline.engines.smart_turn import SmartTurnScorer
from voice_pipeline.engines.text_eot import EndOfTurnScorer

log = logging.getLogger("voice_pipeline.engines")
CHOICES = ("audio", "audio+text", "text", "silence", "auto")
DEFAULT_AUTO = "audio+text"  # the best measured on the pause corpus (docs/turn-taking.md)


class AudioTextScorer:
    """Both signals in one engine: the session scores the pause's audio and its words."""

    def __init__(self, audio: SmartTurnScorer, text: EndOfTurnScorer) -> None:
        self.audio, self.text = audio, text
        self.name = f"{audio.name}+{text.name}"

    async def complete_probability(self, audio_16k: np.ndarray) -> float:
        return await self.audio.complete_probability(audio_16k)

    async def probability(self, text: str) -> float:
        return await self.text.probability(text)

    def close(self) -> None:
        self.audio.close()
        self.text.close()


def resolve_signal(settings: Settings, stt_fast: bool) -> str:
    """The signal to load. The older `vad.semantic_eot` still works: on -> text, off -> silence.
    The text signal needs the pause's transcript (STT on, early final), so without it audio is used."""
    choice = settings.vad.end_of_turn.lower()
    if choice not in CHOICES:
        from voice_pipeline.errors import ConfigError

        raise ConfigError(f"vad.end_of_turn must be one of {', '.join(CHOICES)}, not {choice!r}")
    older = str(settings.vad.semantic_eot).lower()
    if choice == "auto" and older != "auto":
        choice = "text" if switch_on(older, stt_fast) else "silence"
    if choice == "auto":
        choice = DEFAULT_AUTO
    has_text = settings.capabilities.stt and settings.stt.early_final
    if "text" in choice and not has_text:
        return "audio" if "audio" in choice else "silence"
    return choice


def load_end_of_turn(settings: Settings, stt_fast: bool, n_threads: int = 2):
    """The configured model (built in the calling thread), or None for the silence rule."""
    signal = resolve_signal(settings, stt_fast)
    audio = text = None
    if "audio" in signal:
        try:
            audio = SmartTurnScorer.load(n_threads=n_threads, device=settings.vad.device)
            audio.warm_up()
        except (FileNotFoundError, OSError, ImportError) as exc:  # e.g. the pipecat-ai wheel is missing
            log.error("audio end-of-turn model unavailable (%s); falling back", exc)
            signal = "text" if "text" in signal else "silence"
    if "text" in signal:
        text = EndOfTurnScorer.load(settings.llm.model_path)
    log.info("end of turn: %s", signal)
    if audio is not None and text is not None:
        return AudioTextScorer(audio, text)
    return audio or text
