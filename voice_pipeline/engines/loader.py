"""Load and warm the configured engines; the time each takes is part of cold start."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from ..session import Engines
from ..settings import Settings
from .registry import system_prompt

log = logging.getLogger("voice_pipeline.engines")


async def load_engines(settings: Settings) -> tuple[Engines, dict[str, float]]:
    """Build every engine in a worker thread, then warm it; returns the engines and timings (ms)."""
    from .llama_cpp import LlamaCppLlm
    from .piper import PiperTts
    from .vad import SileroVad, load_silero_session
    from .whisper import WhisperStt

    timings: dict[str, float] = {}

    async def timed(name: str, make):
        start = time.perf_counter()
        value = await asyncio.to_thread(make)
        timings[f"{name}_load_ms"] = round(1000 * (time.perf_counter() - start), 1)
        return value

    prompt = system_prompt(settings.llm.system_prompt_file)
    vad_session = await timed("vad", load_silero_session)
    stt = await timed("stt", lambda: WhisperStt(settings.stt))
    llm = await timed("llm", lambda: LlamaCppLlm.from_settings(settings.llm))
    tts = await timed("tts", lambda: PiperTts(settings.tts))
    engines = Engines(
        stt=stt,
        llm=llm,
        tts=tts,
        make_vad=lambda: SileroVad(vad_session),
        system_prompt=prompt,
        vad_executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad"),
    )
    for name, warm in (("stt", stt.warm_up()), ("llm", llm.warm_up(prompt)), ("tts", tts.warm_up())):
        start = time.perf_counter()
        await warm
        timings[f"{name}_warm_ms"] = round(1000 * (time.perf_counter() - start), 1)
    log.info("engines ready: stt=%s llm=%s tts=%s %s", stt.name, llm.name, tts.name, timings)
    return engines, timings
