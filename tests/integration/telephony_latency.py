"""Voice-to-voice latency over each phone path, on the real server and models (median of N calls).

    .venv/bin/python -m tests.integration.telephony_latency --runs 5

Media stream: from the end of speech in the audio the scripted Twilio client sent (when its last
speech frame went out) to the first reply `media` frame it received. SIP: from baresip's
recordings, the end of speech in the `-enc` file to the start of reply audio in the `-dec` file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np

from tests.integration.conftest import start_server, stop_server
from tests.integration.media_stream_client import TwilioFarEnd, first_sound_s, speech_end_s
from tests.integration.sip_phone import _free_udp_port, run_baresip_call
from voice_pipeline.audio import read_wav, write_wav

QUESTION = "What is the capital of France?"


def piper_question(folder: Path, lead_s: float) -> Path:
    from voice_pipeline.bench.corpus import clear_speech

    speech, rate = clear_speech(QUESTION)
    speech = speech * 0.6
    audio = np.concatenate([np.zeros(int(lead_s * rate)), speech, np.zeros(int(0.2 * rate))]).astype(np.float32)
    path = folder / f"question-{lead_s}.wav"
    write_wav(path, audio, rate)
    return path


async def media_stream_ms(url: str, question: Path) -> float:
    audio, rate_hz = read_wav(question)
    async with TwilioFarEnd(url) as phone:
        phone.say(audio, rate_hz, "question")
        await phone.wait_for(lambda heard: heard.media, 90)
        await phone.wait_quiet(quiet_s=1.0, timeout_s=120)
    first = phone.heard.first_media_after(phone.heard.speech_sent["question"])
    return 1000.0 * (first - phone.heard.speech_sent["question"])


async def sip_ms(uri: str, question: Path, workdir: Path) -> float | None:
    result = await run_baresip_call(question, workdir / "heard.wav", uri, 20.0, workdir)
    heard, _ = read_wav(result.recording)
    sent, _ = read_wav(result.sent)
    end_s = speech_end_s(sent)
    start_s = first_sound_s(heard, end_s)
    return None if start_s is None else 1000.0 * (start_s - end_s)


async def measure(runs: int, folder: Path) -> dict[str, list[float]]:
    sip_port = _free_udp_port()
    server = start_server(folder, VP_TELEPHONY_SIP_PORT=str(sip_port))
    results: dict[str, list[float]] = {"media stream (twilio)": [], "sip (baresip)": []}
    try:
        stream_question, sip_question = piper_question(folder, 0.5), piper_question(folder, 1.0)
        for run in range(runs):
            url = f"ws://127.0.0.1:{server.port}/v1/twilio"
            results["media stream (twilio)"].append(await media_stream_ms(url, stream_question))
            workdir = folder / f"sip-{run}"
            workdir.mkdir()
            ms = await sip_ms(f"sip:assistant@127.0.0.1:{sip_port}", sip_question, workdir)
            if ms is not None:
                results["sip (baresip)"].append(ms)
    finally:
        stop_server(server)
        for line in server.log_path.read_text().splitlines():
            if "voice_to_voice_ms=" in line:
                print("server:", line.split(": ", 1)[-1])  # the session's own stage shares
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(measure(args.runs, Path(folder)))
    for path, values in results.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        median = f"{statistics.median(values):.0f} ms" if values else "n/a"
        print(f"{path}: median {median} over {len(values)} calls ({shown})")
    print(f"load average before: {load_before[0]:.1f}, after: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
