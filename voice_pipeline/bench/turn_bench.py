"""`voice-pipeline bench --turn-taking`: turn-taking through a real server, in one run.

For each end-of-turn signal (`vad.end_of_turn`: silence, text, audio+text) a server is started and
the pause corpus (bench/corpus/pauses-v1.json) is played through it at real-time pace by the
client, as `voice-pipeline bench` plays its corpus (server_system.py): false cut-offs (reply audio
before the user's last word), premature endpoints (a turn ended before it, even when the reply
prepared for it was never heard) and client voice-to-voice on the complete questions. Then speech
over the assistant (turn_overlap.py), on the default server and on one with the older rule (any
speech interrupts at once, no echo gate): backchannels said over a reply, the reply's own voice
returned at -10 dB / 150 ms, and real barge-ins (how soon the reply's audio stops arriving, and
when `output_audio_buffer.cleared` comes).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from voice_pipeline.bench import pause_corpus
from voice_pipeline.bench.corpus import CorpusItem, SpokenItem, Synthesizer
from voice_pipeline.bench.procstat import machine_info
from voice_pipeline.bench.stats import summarize
from voice_pipeline.bench.systems import BenchOptions
from voice_pipeline.bench.turn_overlap import BACKCHANNELS, BARGE_INS, LONG_QUESTION, overlap_trial

SIGNALS = ("silence", "text", "audio+text")
OVERLAP_VOICES = (("piper", "en_US-joe-medium"), ("espeak", "en-us"))
RULES = {"judged (default)": {}, "older rule": {"VP_VAD_BARGE_IN_CONFIRM_MS": "0", "VP_VAD_ECHO_GATE": "false"}}


def spoken_items(limit: int = 0) -> list[SpokenItem]:
    """The pause corpus as the bench's SpokenItems (16 kHz, speech end where the last word ends)."""
    items = pause_corpus.load()
    items = items[:limit] if limit else items
    out = []
    for turn in pause_corpus.speak(items):
        voice = dataclasses.replace(turn.item.voice, item_id=turn.item.item_id, text=turn.item.text,
                                    pause_ms=sum(turn.item.pauses_ms))
        out.append(SpokenItem(voice, turn.audio_16k, turn.speech_ms[0][0] / 1000.0, turn.speech_end_ms / 1000.0))
    return out


def summarize_signal(signal: str, samples: list) -> dict:
    paused = [s for s in samples if s.pause_ms]
    complete = [s for s in samples if not s.pause_ms]
    cut = [s.item_id for s in samples if s.spoke_over_user]
    premature = [s.item_id for s in samples if s.premature_endpoints]
    return {
        "signal": signal, "items": len(samples), "paused_items": len(paused), "complete_items": len(complete),
        "false_cut_offs": len(cut), "false_cut_off_ids": cut,
        "premature_endpoints": len(premature), "premature_endpoint_ids": premature,
        "complete_voice_to_voice_ms": summarize(s.voice_to_voice_ms for s in complete if not s.spoke_over_user),
        "failed": [f"{s.item_id}: {s.status}" for s in samples if s.status != "ok"],
        "samples": [{"item_id": s.item_id, "pause_ms": s.pause_ms, "voice_to_voice_ms": s.voice_to_voice_ms,
                     "spoke_over_user": s.spoke_over_user, "premature_endpoints": s.premature_endpoints,
                     "status": s.status, "stages_ms": s.stages_ms, "speculation": s.speculation} for s in samples],
    }


async def run(limit: int = 0, signals: tuple[str, ...] = SIGNALS, overlap: bool = True, log_dir: str = "",
              progress=print) -> dict:
    from voice_pipeline.bench.server_system import ServerSystem

    started = time.monotonic()
    spoken = await asyncio.to_thread(spoken_items, limit)
    options = BenchOptions(max_sessions=4, log_dir=log_dir)
    report: dict = {"schema": "voice-pipeline-turn-taking/1", "machine": machine_info(), "signals": [], "overlap": {}}
    for signal in signals:
        system = ServerSystem(f"eot-{signal}", f"vad.end_of_turn={signal}", {"VP_VAD_END_OF_TURN": signal}, options)
        await system.start()
        try:
            samples = [await system.run_item(item, 1, 0) for item in spoken]
        finally:
            await system.close()
        summary = summarize_signal(signal, samples)
        report["signals"].append(summary)
        progress(f"turn-taking {signal}: {summary['false_cut_offs']}/{summary['items']} cut off, "
                 f"complete p50 {summary['complete_voice_to_voice_ms']['p50']} ms")
    if overlap:
        for rule, env in RULES.items():
            report["overlap"][rule] = await _overlap(rule, env, options, progress)
    report["duration_s"] = round(time.monotonic() - started, 1)
    return report


async def _overlap(rule: str, env: dict, options: BenchOptions, progress) -> dict:
    from voice_pipeline.bench.server_system import ServerSystem

    synth = Synthesizer()

    def say(engine: str, voice: str, text: str) -> np.ndarray:
        return (0.6 * synth.speak(CorpusItem("o", text, engine, voice), text)).astype(np.float32)

    question = np.concatenate([np.zeros(8000, np.float32), say("piper", "en_US-joe-medium", LONG_QUESTION)])
    system = ServerSystem(f"overlap-{len(env)}", rule, env, options)
    await system.start()
    results = []
    try:
        for engine, voice in OVERLAP_VOICES:
            for text in BACKCHANNELS:
                results.append(await overlap_trial(system.url, "backchannel", say(engine, voice, text), text,
                                                   question=question, settle_s=3.0))
        for _ in range(3):
            results.append(await overlap_trial(system.url, "echo", None, "", question=question, settle_s=6.0))
        for engine, voice in OVERLAP_VOICES:
            for text in BARGE_INS:
                results.append(await overlap_trial(system.url, "barge_in", say(engine, voice, text), text,
                                                   question=question, settle_s=3.0))
                results.append(await overlap_trial(system.url, "barge_in", say(engine, voice, text), text,
                                                   question=question, settle_s=3.0, echo=True))
    finally:
        await system.close()
    by_kind = {kind: [r for r in results if r.kind == kind] for kind in ("backchannel", "echo", "barge_in")}
    clean = [r for r in by_kind["barge_in"] if not r.echo]  # with echo, the older rule is interrupted by the echo itself
    out = {
        "backchannel_false_barge_ins": sum(r.interrupted for r in by_kind["backchannel"]),
        "backchannels": len(by_kind["backchannel"]),
        "echo_false_barge_ins": sum(r.interrupted for r in by_kind["echo"]),
        "echo_false_speech": sum(r.false_speech for r in by_kind["echo"]),
        "echo_trials": len(by_kind["echo"]),
        "barge_ins_interrupted": sum(r.interrupted for r in by_kind["barge_in"]),
        "barge_ins": len(by_kind["barge_in"]),
        "barge_ins_with_echo_interrupted": sum(r.interrupted for r in by_kind["barge_in"] if r.echo),
        "barge_in_audio_stop_ms": summarize(r.stop_ms for r in clean),
        "barge_in_cleared_ms": summarize(r.cleared_ms for r in clean),
        "barge_in_paused_ms": summarize(r.paused_ms for r in clean),  # a pausing client stops playing then
        "backchannels_resumed": sum(r.resumed for r in by_kind["backchannel"]),
        "trials": [dataclasses.asdict(r) for r in results],
    }
    progress(f"overlap ({rule}): backchannel false barge-ins {out['backchannel_false_barge_ins']}/{out['backchannels']}, "
             f"echo {out['echo_false_barge_ins']}/{out['echo_trials']}, barge-ins {out['barge_ins_interrupted']}/{out['barge_ins']}")
    return out


def _p50_max(summary: dict | None) -> str:
    """'p50 / max ms', or a dash where nothing was measured (the older rule never pauses)."""
    return f"{summary['p50']} / {summary['max']} ms" if summary and summary["count"] else "-"


def markdown(report: dict, command: str) -> str:
    lines = [f"`{command}` ({report['duration_s']:.0f} s)", "",
             "| signal | false cut-offs | premature endpoints | complete questions: voice-to-voice p50 / p95 |",
             "| --- | --- | --- | --- |"]
    for s in report["signals"]:
        v2v = s["complete_voice_to_voice_ms"]
        lines.append(f"| {s['signal']} | {s['false_cut_offs']} of {s['items']} "
                     f"({100 * s['false_cut_offs'] / max(1, s['items']):.1f} %) | {s['premature_endpoints']} of {s['items']} "
                     f"| {v2v['p50']} / {v2v['p95']} ms (n={v2v['count']}) |")
    if report["overlap"]:
        lines += ["", "| speech over the reply | backchannel false barge-ins | echo (-10 dB, 150 ms) false barge-ins "
                      "| real barge-ins interrupted (of them over the echo) | reply audio stops arriving after: p50 / max "
                      "| `output_audio_buffer.paused` after: p50 / max | `output_audio_buffer.cleared` after: p50 / max |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for rule, o in report["overlap"].items():
            lines.append(f"| {rule} | {o['backchannel_false_barge_ins']} of {o['backchannels']} "
                         f"| {o['echo_false_barge_ins']} of {o['echo_trials']} "
                         f"| {o['barge_ins_interrupted']} of {o['barge_ins']} ({o['barge_ins_with_echo_interrupted']}) "
                         f"| {o['barge_in_audio_stop_ms']['p50']} / {o['barge_in_audio_stop_ms']['max']} ms "
                         f"| {_p50_max(o.get('barge_in_paused_ms'))} "
                         f"| {o['barge_in_cleared_ms']['p50']} / {o['barge_in_cleared_ms']['max']} ms |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    signals = tuple(args.signals.split(",")) if getattr(args, "signals", None) else SIGNALS
    report = asyncio.run(run(args.items or 0, signals, not getattr(args, "no_overlap", False), str(out / "logs"),
                             progress=lambda line: print(line, file=sys.stderr, flush=True)))
    command = "voice-pipeline " + " ".join(sys.argv[1:])
    (out / "turn-taking.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    text = markdown(report, command)
    (out / "turn-taking.md").write_text(text, encoding="utf-8")
    print(text)
    return 0
