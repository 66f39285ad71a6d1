"""CPU per session of the VAD: one Silero call per session (vad.batch = false) against one batched
call per tick for all sessions (vad.batch = true), N sessions of Piper speech streamed in real time.

    .venv/bin/python scripts/vad_cpu.py                       # N = 1, 8, 32, 64; 20 s of audio each
    .venv/bin/python scripts/vad_cpu.py --sessions 64 --seconds 30 --wait-ms 0 8 32

Each session sends 20 ms messages paced at real time (its own phase) and awaits its probabilities,
as Session._input_loop does. Reported per path: process CPU seconds (every thread) per session per
minute of audio, also net of the same pacing loop with no VAD ("pacing"); onnxruntime calls per
second; and each call's wait (message in, probabilities back) at p50 / p95. `--device cpu cuda`
runs the batched model on each (CUDA: onnxruntime's CUDA provider, the gpu extra); the per-session
path is always the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np

from voice_pipeline.audio import resample
from voice_pipeline.bench.corpus import clear_speech
from voice_pipeline.engines.vad_batch import BatchedVad, vad_streams

MESSAGE_MS = 20
SENTENCES = ("What is the capital of France?", "Set a timer for ten minutes.", "Tell me a joke about cats.",
             "How far away is the moon?", "Turn it up a little, please.", "What time is it in Tokyo?")


def speech_16k(seconds: float) -> np.ndarray:
    """Piper sentences with pauses between them, repeated to `seconds` of 16 kHz audio."""
    parts = []
    for text in SENTENCES:
        spoken, rate = clear_speech(text)
        parts += [resample((spoken * 0.6).astype(np.float32), rate, 16_000), np.zeros(12_800, np.float32)]
    audio = np.concatenate(parts)
    return np.resize(audio, int(seconds * 16_000))


class NoVad:
    """The pacing loop's own cost: what a stream would cost if the VAD were free."""

    async def process(self, audio_16k: np.ndarray) -> list[float]:
        return []

    def close(self) -> None:
        pass


async def stream_session(stream, audio: np.ndarray, phase_s: float, start_t: float, waits_s: list[float]) -> None:
    step = 16 * MESSAGE_MS
    await asyncio.sleep(max(0.0, start_t + phase_s - time.monotonic()))
    for index, offset in enumerate(range(0, len(audio) - step + 1, step)):
        due_t = start_t + phase_s + index * MESSAGE_MS / 1000.0
        await asyncio.sleep(max(0.0, due_t - time.monotonic()))
        sent_t = time.monotonic()
        if await stream.process(audio[offset:offset + step]):
            waits_s.append(time.monotonic() - sent_t)
    stream.close()


async def measure(make_stream, sessions: int, audio: np.ndarray, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    streams = [make_stream() for _ in range(sessions)]
    shifts = rng.integers(0, len(audio), sessions)  # each session at its own place in the speech
    phases = rng.uniform(0.0, MESSAGE_MS / 1000.0, sessions)  # and its own message phase
    waits_s: list[float] = []
    start_t = time.monotonic() + 0.2
    cpu_start, wall_start = time.process_time(), time.monotonic()
    await asyncio.gather(*(stream_session(s, np.roll(audio, int(k)), float(p), start_t, waits_s)
                           for s, k, p in zip(streams, shifts, phases)))
    cpu_s, wall_s = time.process_time() - cpu_start, time.monotonic() - wall_start
    audio_min = len(audio) / 16_000 / 60
    waits_ms = sorted(1000 * w for w in waits_s) or [0.0]
    return {"sessions": sessions, "cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 2),
            "cpu_s_per_session_min": round(cpu_s / sessions / audio_min, 4),
            "core_share": round(cpu_s / wall_s, 4),
            "wait_ms_p50": round(statistics.median(waits_ms), 2),
            "wait_ms_p95": round(waits_ms[int(0.95 * (len(waits_ms) - 1))], 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session (streamed in real time)")
    parser.add_argument("--wait-ms", type=float, nargs="+", default=[32.0], help="vad.batch_wait_ms values to try")
    parser.add_argument("--json", action="store_true", help="one JSON line per run instead of the table")
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"],
                        help="where the batched model runs (cuda: onnxruntime's CUDA provider, the gpu extra)")
    args = parser.parse_args()
    audio = speech_16k(args.seconds)
    per_stream = vad_streams(batch=False, wait_ms=0)
    batchers = {(device, wait_ms): BatchedVad(wait_ms=wait_ms, device=device)
                for device in args.device for wait_ms in args.wait_ms}
    rows = []
    for sessions in args.sessions:
        pacing = await measure(NoVad, sessions, audio)
        runs = [("per-session", await measure(per_stream, sessions, audio))]
        for (device, wait_ms), batcher in batchers.items():
            calls_before = batcher.calls
            result = await measure(batcher.stream, sessions, audio)
            result["calls_per_s"] = round((batcher.calls - calls_before) / result["wall_s"], 1)
            runs.append((f"batched {device} wait {wait_ms:g} ms", result))
        for path, result in runs:
            net = result["cpu_s_per_session_min"] - pacing["cpu_s_per_session_min"]
            rows.append({"path": path, **result, "pacing_cpu_s_per_session_min": pacing["cpu_s_per_session_min"],
                         "net_cpu_s_per_session_min": round(net, 4)})
    for batcher in batchers.values():
        batcher.close()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'N':>3} {'path':<27} {'CPU s/session/min':>17} {'net of pacing':>13} {'cores':>6} "
          f"{'calls/s':>8} {'wait p50':>8} {'wait p95':>8}")
    for row in rows:
        print(f"{row['sessions']:>3} {row['path']:<27} {row['cpu_s_per_session_min']:>17.3f} "
              f"{row['net_cpu_s_per_session_min']:>13.3f} {row['core_share']:>6.3f} {row.get('calls_per_s', ''):>8} "
              f"{row['wait_ms_p50']:>8.2f} {row['wait_ms_p95']:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
