"""Voice-to-voice of `talk` for a few Piper-spoken questions against a running server.

    ./dev serve &                      # wait for "ready"
    .venv/bin/python scripts/talk_latency.py --url ws://127.0.0.1:8765/v1/realtime --runs 3

Prints every turn and the medians (client-measured voice-to-voice and the server's stages).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

import numpy as np

from voice_pipeline.audio import write_wav
from voice_pipeline.bench.corpus import clear_speech
from voice_pipeline_client.talk import talk

QUESTIONS = ("What is the capital of France?", "What color is the sky on a clear day?",
             "How many legs does a spider have?")


def speak(folder: Path) -> list[Path]:
    paths = []
    for i, text in enumerate(QUESTIONS):
        speech, rate = clear_speech(text)
        speech = speech * 0.6
        audio = np.concatenate([np.zeros(rate // 2), speech, np.zeros(rate // 4)]).astype(np.float32)
        paths.append(folder / f"q{i}.wav")
        write_wav(paths[-1], audio, rate)
    return paths


async def main(url: str, runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        questions = speak(Path(folder))
        results = []
        for _ in range(runs):
            for path in questions:
                result = await talk(path, url)
                results.append(result.metrics)
                print(result.metrics["voice_to_voice_ms"], result.metrics["stages_ms"], repr(result.transcript))
    print(f"median voice-to-voice over {len(results)} turns: "
          f"{statistics.median(m['voice_to_voice_ms'] for m in results):.0f} ms")
    for stage in results[0]["stages_ms"]:
        values = [m["stages_ms"].get(stage, 0.0) for m in results]
        print(f"  median {stage:<16} {statistics.median(values):7.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/realtime")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.runs))
