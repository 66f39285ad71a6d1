"""STT batched across sessions against one pass per call: latency and throughput of N concurrent finals.

Usage (repository root, project environment):

    .venv/bin/python scripts/stt_batch_bench.py --levels 1,2,4,6 --rounds 8 --out stt_batch.json

The bench corpus (bench/corpus/v1.json, synthesized here) gives 24 questions of 2-4 s once cut
as a session's final pass sees them (300 ms before the speech, 100 ms after). At each level N,
each round submits N different utterances at once to `WhisperStt` with `stt.batch` on, then to one
with it off (alternating, so a busy neighbour on a shared machine costs both alike); a pass's
latency runs from its submission to its transcript, a round's throughput is its passes / its wall time.
Medians (and the passes' p90) are printed and written to `--out`. `--mixed` runs the levels again
with a partial pass of another session submitted beside each final (latency: the finals').

`--quality` also compares the transcripts: every utterance (and a partial cut at 60 % of its
speech) decoded in batches of 6 against decoded alone, counting the ones that differ, with the
word error rate of the finals against the corpus text for both paths.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voice_pipeline.app.settings import SttSettings  # noqa: E402
from voice_pipeline.bench.corpus import Corpus, build  # noqa: E402
from voice_pipeline.bench.stats import normalize_text, word_error_rate  # noqa: E402
from voice_pipeline.engines.whisper import WhisperStt  # noqa: E402

RATE_HZ = 16_000
PRE_ROLL_S, TAIL_S = 0.3, 0.1  # vad.prefix_padding_ms and the final pass's tail


def utterances() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(reference text, final-pass audio, partial-pass audio) for each corpus item."""
    corpus = Corpus.load()
    out = []
    for item in build(corpus, list(corpus.items)):
        start = max(0, int((item.speech_start_s - PRE_ROLL_S) * RATE_HZ))
        end = int((item.speech_end_s + TAIL_S) * RATE_HZ)
        partial_end = int((item.speech_start_s + 0.6 * item.speech_s) * RATE_HZ)
        out.append((item.item.text, item.audio_16k[start:end], item.audio_16k[start:partial_end]))
    return out


async def round_of(stt: WhisperStt, audios: list[np.ndarray], partials: list[np.ndarray] | None = None,
                   ) -> tuple[float, list[float]]:
    """Wall seconds for the round, and each final's seconds from submission to transcript. With
    `partials`, each final is submitted just after one partial pass of another session."""
    async def one(audio: np.ndarray, final: bool) -> float:
        started = time.perf_counter()
        await stt.transcribe(audio, final=final)
        return time.perf_counter() - started

    passes = [(a, True) for a in audios]
    if partials is not None:
        passes = [p for pair in zip([(a, False) for a in partials], passes) for p in pair]
    started = time.perf_counter()
    latencies = await asyncio.gather(*(one(a, final) for a, final in passes))
    return time.perf_counter() - started, [t for t, (_, final) in zip(latencies, passes) if final]


def median_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 1)


def p90_ms(values: list[float]) -> float:
    if len(values) < 2:
        return round(1000 * values[0], 1)
    return round(1000 * statistics.quantiles(values, n=10, method="inclusive")[-1], 1)


async def sweep(engines: dict[str, WhisperStt], finals: list[np.ndarray], levels: list[int], rounds: int,
                partials: list[np.ndarray] | None = None) -> dict:
    report = {}
    for n in levels:
        walls: dict[str, list[float]] = {mode: [] for mode in engines}
        latencies: dict[str, list[float]] = {mode: [] for mode in engines}
        for r in range(rounds):
            group = [finals[(r * n + k) % len(finals)] for k in range(n)]
            others = None if partials is None else [partials[(r * n + k + n) % len(partials)] for k in range(n)]
            for mode, stt in engines.items():
                wall, passes = await round_of(stt, group, others)
                walls[mode].append(wall)
                latencies[mode].extend(passes)
        report[str(n)] = {
            mode: {"latency_p50_ms": median_ms(latencies[mode]), "latency_p90_ms": p90_ms(latencies[mode]),
                   "round_p50_ms": median_ms(walls[mode]),
                   "passes_per_s": round(n * (1 if partials is None else 2) / statistics.median(walls[mode]), 2)}
            for mode in engines
        }
        label = f"N={n}" if partials is None else f"N={n} (+N partials)"
        print(f"{label}: " + "; ".join(
            f"{mode} latency p50 {v['latency_p50_ms']} / p90 {v['latency_p90_ms']} ms, round p50 {v['round_p50_ms']} ms, "
            f"{v['passes_per_s']} passes/s" for mode, v in report[str(n)].items()), flush=True)
    return report


async def quality(engines: dict[str, WhisperStt], items: list[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    batched, alone = engines["batched"], engines["unbatched"]
    audios = [a for _, final, partial in items for a in (final, partial)]
    texts_batched: list[str] = []
    for k in range(0, len(audios), 6):
        group = audios[k:k + 6]
        texts_batched += [t.text for t in await asyncio.gather(*(batched.transcribe(a, final=True) for a in group))]
    texts_alone = [(await alone.transcribe(a, final=True)).text for a in audios]
    differ = [{"pass": ("final", "partial")[k % 2], "batched": b, "alone": a}
              for k, (b, a) in enumerate(zip(texts_batched, texts_alone)) if b != a]
    references = [text for text, _, _ in items]
    return {
        "utterances": len(audios), "differ": len(differ),
        "differ_finals": sum(d["pass"] == "final" for d in differ),
        "differ_in_words": sum(normalize_text(d["batched"]) != normalize_text(d["alone"]) for d in differ),
        "examples": differ[:12],
        "final_wer_batched": word_error_rate(zip(references, texts_batched[0::2])),
        "final_wer_alone": word_error_rate(zip(references, texts_alone[0::2])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,6")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per level and path")
    parser.add_argument("--quality", action="store_true", help="also count transcripts that differ")
    parser.add_argument("--mixed", action="store_true",
                        help="also the levels again with N partials of other sessions submitted beside the N finals "
                             "(the finals' latency)")
    parser.add_argument("--device", default="auto", help="stt.device (auto: CUDA when CTranslate2 sees one)")
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args()
    items = utterances()
    engines = {mode: WhisperStt(SttSettings(batch=switch, device=args.device))
               for mode, switch in (("batched", "on"), ("unbatched", "off"))}
    finals = [final for _, final, _ in items]
    lengths_s = [len(a) / RATE_HZ for a in finals]
    print(f"{len(finals)} utterances of {min(lengths_s):.1f}-{max(lengths_s):.1f} s; "
          f"STT {engines['batched'].name}", flush=True)

    async def run() -> dict:
        for stt in engines.values():
            await stt.warm_up()
            await round_of(stt, finals[:4])
        report: dict = {"stt": engines["batched"].name, "levels": await sweep(
            engines, finals, [int(n) for n in args.levels.split(",")], args.rounds)}
        if args.mixed:
            partials = [partial for _, _, partial in items]
            report["mixed"] = await sweep(engines, finals, [int(n) for n in args.levels.split(",")], args.rounds,
                                          partials)
        if args.quality:
            report["quality"] = await quality(engines, items)
            q = report["quality"]
            print(f"quality: {q['differ']} of {q['utterances']} transcripts differ ({q['differ_finals']} finals; "
                  f"{q['differ_in_words']} in their words, not only punctuation); final WER batched "
                  f"{q['final_wer_batched']}, alone {q['final_wer_alone']}", flush=True)
        return report

    report = asyncio.run(run())
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
