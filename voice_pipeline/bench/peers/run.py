"""`voice-pipeline bench --peers pipecat`: this pipeline and peer frameworks, same items, same models.

Every system plays the corpus items without a mid-sentence pause (20 of v1's 24; `--quick`: two),
one session, one item after another, at real-time pace; voice-to-voice is taken on the bench's
clock for all. The peers share one llama.cpp server (llm_server.py); this pipeline runs its own
llama.cpp in-process, as it does in production.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voice_pipeline.bench import corpus as corpus_mod
from voice_pipeline.bench.peers import LIVEKIT_NOT_DONE, PEER_GROUPS, make_peer
from voice_pipeline.bench.peers.llm_server import LlamaServer
from voice_pipeline.bench.procstat import ProcessMeter, machine_info, versions
from voice_pipeline.bench.stats import summarize, word_error_rate
from voice_pipeline.bench.systems import SYSTEMS, BenchOptions, TurnSample

OUR_LINES = ("pipeline", "pipeline_base_llm")
MARKS = ("vad_stopped", "endpoint", "stt_final", "llm_first_token", "tts_first_audio", "first_audio_sent")


@dataclass(frozen=True)
class PeerRunConfig:
    peers: tuple[str, ...] = ("pipecat",)
    quick: bool = False
    max_items: int = 0  # 0: every item without a pause (quick: 2)
    ours: tuple[str, ...] = OUR_LINES  # quick: none (the check is that the peers still run)
    corpus_path: str = str(corpus_mod.DEFAULT_CORPUS)
    turn_timeout_s: float = 60.0
    log_dir: str = ""
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def quick_config(cls, **overrides) -> "PeerRunConfig":
        return cls(**{"quick": True, "max_items": 2, "ours": (), "turn_timeout_s": 45.0, **overrides})


def unknown_peers(peers: tuple[str, ...]) -> list[str]:
    return [p for p in peers if p not in PEER_GROUPS]


async def run_peers(config: PeerRunConfig, progress=print) -> dict:
    started_t = time.monotonic()
    machine = machine_info()  # its load average is the one at the start
    corpus = corpus_mod.Corpus.load(config.corpus_path)
    items = [i for i in corpus.items if not i.pause_ms]
    if config.quick:
        quick = set(corpus.quick_ids)
        items = [i for i in items if i.item_id in quick] + [i for i in items if i.item_id not in quick]
    items = items[: config.max_items] if config.max_items else items
    progress(f"bench: synthesizing {len(items)} corpus items")
    spoken = await asyncio.to_thread(corpus_mod.build, corpus, items)
    options = BenchOptions(max_sessions=2, turn_timeout_s=config.turn_timeout_s, log_dir=config.log_dir,
                           extra_env=dict(config.extra_env))
    lines = [n for peer in config.peers for n in PEER_GROUPS[peer]]
    not_adapted = {p: LIVEKIT_NOT_DONE for p in config.peers if not PEER_GROUPS[p]}
    samples: list[TurnSample] = []
    cold: dict = {}
    resources: dict = {}
    for name in config.ours:
        samples += await _play(SYSTEMS[name].make(options), spoken, cold, resources, progress)
    if lines:
        llm = LlamaServer(Path(config.log_dir or "."))
        cold["llama_server"] = await llm.start()
        try:
            for name in lines:
                samples += await _play(make_peer(name, options, llm=llm, progress=progress), spoken, cold,
                                       resources, progress)
        finally:
            await llm.close()
    descriptions = {n: SYSTEMS[n].description for n in (*config.ours, *lines)}
    return {
        "schema": "voice-pipeline-bench-peers/1",
        "created_unix": round(time.time()),
        "mode": "quick" if config.quick else "full",
        "duration_s": round(time.monotonic() - started_t, 1),
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": {**versions(), **{f"peer:{k}": v for n in lines for k, v in cold[n].get("versions", {}).items()}},
        "configuration": {"run": asdict(config), "items": [i.describe() for i in items],
                          "corpus": os.path.relpath(corpus.path), "not_adapted": not_adapted},
        "samples": [s.to_json() for s in samples],
        "cold_start": cold,
        "resources": resources,
        "summary": {n: summarize_system([s for s in samples if s.system == n], descriptions[n]) for n in descriptions},
    }


async def _play(system, spoken, cold: dict, resources: dict, progress) -> list[TurnSample]:
    try:
        cold[system.name] = await system.start()
        meter = ProcessMeter(system.pid) if system.pid else None
        if meter:
            meter.start()
        t = time.monotonic()
        out = [await system.run_item(item, 1, 0) for item in spoken]
        resources[system.name] = meter.stop() if meter else {}
    finally:
        await system.close()
    stats = summarize(s.voice_to_voice_ms for s in out)
    progress(f"bench: {system.name}: {sum(s.status == 'ok' for s in out)}/{len(out)} ok, p50 {stats['p50']} ms, "
             f"p95 {stats['p95']} ms voice-to-voice ({time.monotonic() - t:.0f} s)")
    return out


def summarize_system(group: list[TurnSample], description: str) -> dict:
    ok = [s for s in group if s.status == "ok"]
    own = sorted({k for s in ok for k in s.stages_ms})
    return {
        "description": description,
        "turns": len(group),
        "status": dict(Counter(s.status for s in group)),
        "voice_to_voice_ms": summarize(s.voice_to_voice_ms for s in group),
        "marks_ms": {m: summarize(s.marks_ms.get(m) for s in ok) for m in MARKS},
        "stages_ms": {k: summarize(s.stages_ms.get(k) for s in ok) for k in own},
        "wer": word_error_rate((s.reference, s.transcript) for s in group)["wer"],
        "spoke_over_user": sum(s.spoke_over_user for s in group),
    }


def all_ok(report: dict) -> bool:
    return all(s["status"] == {"ok": s["turns"]} for s in report["summary"].values())

