"""Load and warm the configured engines; the time each takes is part of cold start."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from voice_pipeline.app.settings import Settings, switch_on
from voice_pipeline.engines.registry import cache_dir, system_prompt
from voice_pipeline.session.load import StageLoad
from voice_pipeline.session.engines import Engines
from voice_pipeline.threads import named_thread_pool

log = logging.getLogger("voice_pipeline.engines")


async def load_engines(settings: Settings) -> tuple[Engines, dict[str, float]]:
    """Build every engine in a worker thread, then warm it; returns the engines and timings (ms)."""
    from voice_pipeline.app.supervisor import WorkerInfo
    from voice_pipeline.engines.piper import PiperTts, synthesis_threads
    from voice_pipeline.engines.vad_batch import vad_streams
    from voice_pipeline.engines.whisper import WhisperStt

    timings: dict[str, float] = {}

    async def timed(name: str, make):
        # Loaded on a thread named "<name>-native_0": the threads a library starts meanwhile (whisper's
        # CTranslate2 workers, onnxruntime's intra-op pools) inherit that name, so /proc, `top -H`
        # and the bench's CPU by stage can tell which stage they work for.
        loader = named_thread_pool(1, f"{name}-native")
        start = time.perf_counter()
        try:
            value = await asyncio.get_running_loop().run_in_executor(loader, make)
        finally:
            loader.shutdown(wait=False)
        timings[f"{name}_load_ms"] = round(1000 * (time.perf_counter() - start), 1)
        return value

    from voice_pipeline.reply.answer import Answerer
    from voice_pipeline.reply.phrasebook import STANDARD_PHRASES, Phrasebook

    capabilities = settings.capabilities
    prompt = system_prompt(settings.llm.system_prompt_file)
    vad = settings.vad
    make_vad = await timed("vad", lambda: vad_streams(vad.batch, vad.batch_wait_ms, vad.device))
    stt = await timed("stt", lambda: WhisperStt(settings.stt)) if capabilities.stt else None
    llm = await timed("llm", lambda: make_llm(settings.llm)) if capabilities.llm else None
    tts_threads = synthesis_threads(settings.tts.threads, WorkerInfo.from_env().count)
    tts = await timed("tts", lambda: PiperTts(settings.tts, tts_threads)) if capabilities.tts else None
    answerer = await timed("router", lambda: Answerer.from_settings(settings, llm))
    stt_fast = await stt_within_window(stt, settings.vad.endpoint_silence_ms, timings) if stt else False
    from voice_pipeline.engines.end_of_turn import load_end_of_turn

    eot = await timed("eot", lambda: load_end_of_turn(settings, stt_fast))
    engines = Engines(
        stt=stt,
        llm=llm,
        tts=tts,
        make_vad=make_vad,
        system_prompt=prompt,
        answerer=answerer,
        eot=eot,
        speculate=switch_on(settings.vad.speculate, stt_fast),
        load=StageLoad(settings.llm.instances, (lambda: stt.waiting) if isinstance(stt, WhisperStt) else (lambda: 0)),
    )
    warm_ups = {"llm": llm and llm.warm_up(prompt), "tts": tts and tts.warm_up()}
    for name, warm in warm_ups.items():
        if warm is not None:
            start = time.perf_counter()
            await warm
            timings[f"{name}_warm_ms"] = round(1000 * (time.perf_counter() - start), 1)
    start = time.perf_counter()
    engines.phrases = await Phrasebook.build(tts, STANDARD_PHRASES + COMMON_TEMPLATE_REPLIES, cache_dir())
    timings["phrases_ms"] = round(1000 * (time.perf_counter() - start), 1)
    names = {name: engine.name if engine else "off" for name, engine in (("stt", stt), ("llm", llm), ("tts", tts))}
    log.info("engines ready: %s remote=%s %s", names, bool(answerer.large), timings)
    return engines, timings


def make_llm(llm):
    """The local LLM as `llm.serving` says: in this process, child llama.cpp servers, one child
    llama-server with parallel slots, or URL(s)."""
    if llm.serving == "in_process":
        from voice_pipeline.engines.llama_cpp import LlamaCppLlm

        return LlamaCppLlm.from_settings(llm)
    if llm.serving in ("child", "server", "url"):
        from voice_pipeline.engines.llama_server import SlotsLlm

        return SlotsLlm.from_settings(llm)
    from voice_pipeline.errors import ConfigError

    raise ConfigError(f"llm.serving must be in_process, child, server or url, not {llm.serving!r}")


async def stt_within_window(stt, endpoint_window_ms: float, timings: dict[str, float]) -> bool:
    """Warm the STT, then time one pass over two seconds of silence. Speculation and the semantic
    end-of-turn pay off only when the final transcript is ready within the endpoint window; a pass
    over real speech decodes its words too and measured about twice the silent pass (fitted window
    on a 2-core CPU: 157 ms p50 against ~80 ms), so "auto" asks for a silent pass within half the window."""
    start = time.perf_counter()
    await stt.warm_up()
    timings["stt_warm_ms"] = round(1000 * (time.perf_counter() - start), 1)
    start = time.perf_counter()
    await stt.transcribe(np.zeros(2 * 16_000, dtype=np.float32), final=True)
    timings["stt_pass_ms"] = round(1000 * (time.perf_counter() - start), 1)
    fast = getattr(stt, "device", "cpu") == "cuda" or timings["stt_pass_ms"] <= endpoint_window_ms / 2
    log.info("STT pass over 2 s: %.0f ms; settings left at 'auto' (speculation by default) turn %s",
             timings["stt_pass_ms"], "on" if fast else "off")
    return fast


# Fixed answers of the instant route, pre-synthesized so they cost no TTS time.
COMMON_TEMPLATE_REPLIES = (
    "You're welcome.", "Goodbye!", "Okay.", "Okay, louder.", "Okay, quieter.", "I'm back.",
    "Okay, I'll slow down.", "Okay, I'll speed up.", "Hi! What can I do for you?",
    "Good morning! What can I do for you?", "Good afternoon! What can I do for you?",
    "Good evening! What can I do for you?",
    "I can answer questions, explain things, help you plan, and tell you the time. Just ask.",
)
