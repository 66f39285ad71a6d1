"""The benchmark run: corpus -> this pipeline (cold start, N=1, concurrency sweep) -> baselines."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

from voice_pipeline.bench import corpus as corpus_mod
from voice_pipeline.bench.procstat import (GpuSampler, ProcessMeter, busiest_summary, machine_info, stages_summary,
                                           versions)
from voice_pipeline.bench.stats import summarize
from voice_pipeline.bench.summary import summarize_run
from voice_pipeline.bench.systems import SYSTEMS, BenchOptions, SystemUnderTest, TurnSample

log = logging.getLogger("voice_pipeline.bench")


@dataclass(frozen=True)
class RunConfig:
    quick: bool = False
    max_items: int = 0  # 0: every item of the corpus (or of its quick set)
    corpus_path: str = str(corpus_mod.DEFAULT_CORPUS)
    limit_ms: float = 2500.0  # p95 voice-to-voice beyond which the concurrency sweep stops
    max_concurrency: int = 16
    items_per_session: int = 3  # items each concurrent session plays, one after another
    stagger_s: float = 2.0  # concurrent sessions start spread over this many seconds
    baselines: tuple[str, ...] = ("naive", "no_early_final", "no_partials", "sentences_only",
                                  "tts_whole_sentences", "no_llm_tts_streaming", "streaming_off")
    baseline_items: int = 8
    # Systems that play the whole corpus (mid-sentence pauses included), to compare turn-taking.
    comparisons: tuple[str, ...] = ("full_window", "partials_often", "partials_rarely", "speculation_and_eot",
                                    "speculation_only", "eot_only", "silence_only")
    turn_timeout_s: float = 60.0
    # Explicit concurrency levels (e.g. (1, 4, 6)): only these are played, each session playing
    # `items_per_session` items; no whole-corpus pass at N=1, no baselines, no comparisons.
    levels: tuple[int, ...] = ()
    full_replies: bool = False  # wait for each whole reply (played out at real time) instead of cutting it short
    log_dir: str = ""
    # Each level's samples and resources as one JSON line, written as the level ends: a run stopped
    # part-way (a time limit on a lent GPU machine) keeps the levels it finished.
    levels_path: str = ""
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def quick_config(cls, **overrides) -> "RunConfig":
        base = dict(quick=True, max_concurrency=2, items_per_session=1, stagger_s=1.0,
                    baselines=("naive", "no_llm_tts_streaming"), baseline_items=2, comparisons=())
        return cls(**{**base, **overrides})


async def run_benchmark(config: RunConfig, progress=print) -> dict:
    started_t = time.monotonic()
    corpus = corpus_mod.Corpus.load(config.corpus_path)
    items = corpus.select(corpus.quick_ids if config.quick else None)
    items = items[: config.max_items] if config.max_items else items
    progress(f"bench: synthesizing {len(items)} corpus items")
    t = time.monotonic()
    spoken = await asyncio.to_thread(corpus_mod.build, corpus, items)
    corpus_build_s = round(time.monotonic() - t, 1)
    baseline_ids = [i for i in corpus.baseline_ids if i in {s.item.item_id for s in spoken}][: config.baseline_items]
    if len(baseline_ids) < config.baseline_items:  # quick corpora may hold few of them
        baseline_ids += [s.item.item_id for s in spoken if s.item.item_id not in baseline_ids and not s.item.pause_ms]
        baseline_ids = baseline_ids[: config.baseline_items]
    options = BenchOptions(max_sessions=max(config.max_concurrency, *config.levels, 0) + 2,
                           turn_timeout_s=config.turn_timeout_s, log_dir=config.log_dir,
                           extra_env=dict(config.extra_env), full_replies=config.full_replies)
    samples: list[TurnSample] = []
    phases: dict = {"cold_start": {}, "resources": {}, "concurrency": []}

    pipeline = SYSTEMS["pipeline"].make(options)
    try:
        phases["cold_start"]["pipeline"] = await pipeline.start()
        progress(f"bench: pipeline ready in {phases['cold_start']['pipeline']['process_to_ready_ms'] / 1000:.1f} s")
        if config.levels:
            for sessions in config.levels:
                samples += await _level(pipeline, spoken, sessions, config.items_per_session,
                                        config.stagger_s if sessions > 1 else 0.0, phases, "pipeline", progress,
                                        config.levels_path)
        else:
            samples += await _level(pipeline, spoken, 1, len(spoken), 0.0, phases, "pipeline", progress,
                                    config.levels_path)
            await _sweep(pipeline, spoken, config, phases, samples, progress)
    finally:
        await pipeline.close()

    baseline_spoken = [s for s in spoken if s.item.item_id in baseline_ids]
    for names, items_of_system in ((config.baselines, baseline_spoken), (config.comparisons, spoken)):
        for name in () if config.levels else names:
            samples += await _one_session(name, items_of_system, options, phases, progress)

    return {
        "schema": "voice-pipeline-bench/1",
        "created_unix": round(time.time()),
        "mode": "quick" if config.quick else "full",
        "duration_s": round(time.monotonic() - started_t, 1),
        "machine": machine_info(),
        "versions": versions(),
        "configuration": _configuration(config, corpus, items, baseline_ids, corpus_build_s),
        "samples": [s.to_json() for s in samples],
        "phases": phases,
        "summary": summarize_run(samples, phases, config.limit_ms, baseline_ids,
                                 {name: SYSTEMS[name].description for name in ("pipeline", *config.baselines)},
                                 {name: SYSTEMS[name].description for name in config.comparisons}),
    }


async def _one_session(name: str, spoken, options: BenchOptions, phases: dict, progress) -> list[TurnSample]:
    """Start system `name`, play `spoken` through one session, stop it."""
    system = SYSTEMS[name].make(options)
    try:
        phases["cold_start"][name] = await system.start()
        return await _level(system, spoken, 1, len(spoken), 0.0, phases, name, progress)
    finally:
        await system.close()


async def _sweep(pipeline, spoken, config: RunConfig, phases: dict, samples: list, progress) -> None:
    """N = 2, 4, 8, ... concurrent sessions until p95 voice-to-voice passes the limit."""
    sessions = 2
    while sessions <= config.max_concurrency:
        level = await _level(pipeline, spoken, sessions, config.items_per_session, config.stagger_s,
                             phases, "pipeline", progress, config.levels_path)
        samples += level
        p95 = phases["concurrency"][-1]["p95_voice_to_voice_ms"]
        if p95 is None or p95 > config.limit_ms:
            progress(f"bench: p95 voice-to-voice {p95} ms at N={sessions} passes the {config.limit_ms:.0f} ms limit")
            return
        sessions *= 2


async def _level(system: SystemUnderTest, spoken, sessions: int, items_per_session: int, stagger_s: float,
                 phases: dict, label: str, progress, levels_path: str = "") -> list[TurnSample]:
    """`sessions` conversations at once, each playing `items_per_session` items in turn (and, with
    `levels_path`, appended there as one JSON line when done)."""
    meter = ProcessMeter(system.pid) if system.pid else None
    if meter:
        meter.start()
    gpu = GpuSampler()
    gpu.start()
    t = time.monotonic()

    async def session(index: int) -> list[TurnSample]:
        await asyncio.sleep(stagger_s * index / sessions)
        out = []
        for k in range(items_per_session):
            item = spoken[(index * items_per_session + k) % len(spoken)]
            out.append(await system.run_item(item, sessions, index))
        return out

    results = await asyncio.gather(*(session(i) for i in range(sessions)))
    level = [s for per_session in results for s in per_session]
    resources = {**(meter.stop() if meter else {}), **await gpu.stop()}
    done = [s.voice_to_voice_ms for s in level if s.voice_to_voice_ms is not None]
    stats = summarize(done)
    refused = sum(s.status == "refused" for s in level)
    stalled = sum(1 for s in level if s.playback_gaps_ms)
    progress(f"bench: {label} N={sessions}: {len(level)} turns, p50 {stats['p50']} ms, p95 {stats['p95']} ms "
             f"voice-to-voice, {refused} refused, {stalled} with playback stalls, CPU {resources.get('cpu_cores_used')} cores, "
             f"GPU {_percent(resources['gpu_utilisation_percent'])}, by stage {stages_summary(resources)}, "
             f"busiest thread {busiest_summary(resources)} "
             f"({time.monotonic() - t:.0f} s)")
    key = f"{label}@{sessions}"
    phases["resources"][key] = resources
    if levels_path:
        with open(levels_path, "a") as out:
            out.write(json.dumps({"system": label, "sessions": sessions, "resources": resources,
                                  "samples": [s.to_json() for s in level]}) + "\n")
    if label == "pipeline" and sessions > 1:
        phases["concurrency"].append({"sessions": sessions, "p95_voice_to_voice_ms": stats["p95"]})
    return level


def _percent(value: float | str) -> str:
    return f"{value} %" if isinstance(value, (int, float)) else str(value)



def _configuration(config: RunConfig, corpus, items, baseline_ids, corpus_build_s: float) -> dict:
    from voice_pipeline.app.settings import Settings

    settings = Settings.load(environ={**os.environ, **config.extra_env})
    return {
        "run": {k: v for k, v in asdict(config).items() if k != "log_dir"},
        "corpus": {"path": os.path.relpath(corpus.path), "version": corpus.version, "items": [i.describe() for i in items],
                   "lead_silence_ms": corpus.lead_silence_ms, "tail_ms": corpus.tail_ms, "build_seconds": corpus_build_s},
        "baseline_item_ids": baseline_ids,
        "settings": asdict(settings),
        "method": {
            "voice_to_voice": "client: from when the item's last speech sample would have left a microphone "
                              "(streamed at real-time pace) to the first reply audio frame received",
            "reply": "each whole reply is awaited (response.done), its audio paced out at real time"
                     if config.full_replies else
                     "each reply is cancelled (response.cancel) once its first audio frame and 20 LLM tokens "
                     "(or the whole text) have arrived; the rest would only be paced out at real time",
            "conversation": "each item is a new WebSocket session (no history carried over)",
        },
    }
