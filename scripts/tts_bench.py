"""The TTS alone under concurrency: N first pieces at once through the engine the workers use.

Usage (repository root, project environment; the TTS settings come from VP_TTS_*, as for `serve`):

    VP_TTS_DEVICE=cuda VP_TTS_BATCH=on .venv/bin/python scripts/tts_bench.py \
        --levels 1,16,64 --processes 1,8 --rounds 3 --out tts.json

For each process count P it starts P processes that each build `PiperTts` as a pipeline worker
of P workers does (its lanes, threads and, with `tts.batch`, its batchers) and warm it up. Then
at each level N they synthesize N short first pieces (a reply's first clause, 3-9 words) at the
same moment, spread over the P processes, `--rounds` times. Per piece: the time to its first audio
(what a user waits for) and to its last; per level the p50 and p95 of both, the seconds of audio
made per second (wall time from each round's start to its last piece), the processes' CPU per
piece and, with batching, the rows per model call.
Pieces go to the urgent lane (a reply's first piece) unless `--later` (the niced lane); `--same`
speaks one text throughout (onnxruntime's per-shape work on CUDA done once, not per piece).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voice_pipeline.bench.stats import summarize  # noqa: E402

PIECES = [
    "Paris is the capital of France.", "Sure, I can help with that.", "The moon is about,",
    "Water boils at one hundred degrees,", "Good question, let me think.", "It is about three hours by train,",
    "The tallest mountain is Everest,", "Yes, that works for me.", "Light travels very fast,",
    "A week has seven days.", "Honey never really spoils,", "The answer is forty two.",
]


def child(processes: int) -> None:
    """A worker's TTS: reads {"n", "start_at", "later"} lines, answers each with its pieces' timings."""
    from voice_pipeline.app.settings import Settings
    from voice_pipeline.engines.piper import PiperTts, synthesis_threads

    settings = Settings.load(environ=dict(os.environ)).tts
    tts = PiperTts(settings, synthesis_threads(settings.threads, processes))
    asyncio.run(tts.warm_up())
    print(json.dumps({"ready": True, "batched": tts.batched}), flush=True)
    for line in sys.stdin:
        order = json.loads(line)
        cpu_before = time.process_time()
        pieces = asyncio.run(_burst(tts, order))
        print(json.dumps({"pieces": pieces, "cpu_s": time.process_time() - cpu_before,
                          "batches": _batches(tts)}), flush=True)


async def _burst(tts, order: dict) -> list[dict]:
    await asyncio.sleep(max(0.0, order["start_at"] - time.time()))

    async def one(text: str) -> dict:
        started, first, samples = time.perf_counter(), None, 0
        async for chunk in tts.synthesize(text, urgent=not order["later"]):
            first = first if first is not None else (time.perf_counter() - started) * 1000
            samples += len(chunk)
        return {"first_ms": first, "last_ms": (time.perf_counter() - started) * 1000,
                "audio_s": samples / tts.sample_rate_hz}

    offset = order["offset"]
    count = order["n"]
    texts = [PIECES[0]] * count if order["same"] else [PIECES[(offset + i) % len(PIECES)] for i in range(count)]
    return await asyncio.gather(*map(one, texts))


def _batches(tts) -> dict:
    """Model calls and rows so far, both lanes (empty without batching)."""
    batchers = tts.batchers
    return {"calls": sum(b.calls for b in batchers), "rows": sum(b.rows for b in batchers)} if batchers else {}


def measure(processes: int, levels: list[int], rounds: int, later: bool, same: bool = False) -> list[dict]:
    script = str(Path(__file__).resolve())
    children = [subprocess.Popen([sys.executable, script, "--child", str(processes)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    try:
        ready = [c.stdout.readline() for c in children]
        if not all(ready):
            raise SystemExit("tts_bench: a TTS process did not start (its error is above)")
        batched = json.loads(ready[0])["batched"]
        results, calls_before, rows_before = [], 0, 0
        for level in levels:
            shares = [level // processes + (1 if i < level % processes else 0) for i in range(processes)]
            pieces, cpu_s, wall_s, answers = [], 0.0, 0.0, []
            for r in range(rounds):
                start_at = time.time() + 0.3
                for i, (c, n) in enumerate(zip(children, shares)):
                    order = {"n": n, "start_at": start_at, "later": later, "same": same,
                             "offset": r * level + sum(shares[:i])}
                    c.stdin.write(json.dumps(order) + "\n")
                    c.stdin.flush()
                answers = [json.loads(c.stdout.readline()) for c in children]
                wall_s += time.time() - start_at
                for a in answers:
                    pieces += a["pieces"]
                    cpu_s += a["cpu_s"]
            calls = sum(a["batches"].get("calls", 0) for a in answers)  # the children count from their start
            rows = sum(a["batches"].get("rows", 0) for a in answers)
            results.append({
                "processes": processes, "pieces_at_once": level, "rounds": rounds, "batched": batched,
                "first_audio_ms": summarize(p["first_ms"] for p in pieces),
                "last_audio_ms": summarize(p["last_ms"] for p in pieces),
                "cpu_ms_per_piece": round(cpu_s * 1000 / max(1, len(pieces)), 1),
                "audio_s_per_s": round(sum(p["audio_s"] for p in pieces) / wall_s, 1),
                "rows_per_call": round((rows - rows_before) / (calls - calls_before), 2)
                if calls > calls_before else None,
            })
            calls_before, rows_before = calls, rows
            print(_line(results[-1]), flush=True)
        return results
    finally:
        for c in children:
            c.stdin.close()
            c.wait(timeout=30)


def _line(r: dict) -> str:
    first, last = r["first_audio_ms"], r["last_audio_ms"]
    return (f"P={r['processes']} N={r['pieces_at_once']}: first audio p50 {first['p50']} p95 {first['p95']} ms, "
            f"last p50 {last['p50']} p95 {last['p95']} ms, {r['cpu_ms_per_piece']} CPU ms/piece, "
            f"{r['audio_s_per_s']} s of audio/s, rows/call {r['rows_per_call']}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(int(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--processes", default="1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--later", action="store_true", help="the later lane (niced) instead of the urgent one")
    parser.add_argument("--same", action="store_true",
                        help="every piece the same text (its model shapes warm after the first round)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k.startswith("VP_TTS_")}
    print(f"tts_bench: {env or 'defaults'}", flush=True)
    results = [r for p in map(int, args.processes.split(","))
               for r in measure(p, [int(n) for n in args.levels.split(",")], args.rounds, args.later, args.same)]
    if args.out:
        Path(args.out).write_text(json.dumps({"env": env, "levels": results}, indent=1))


if __name__ == "__main__":
    main()
