"""`voice-pipeline talk`: speak a WAV file to the assistant, like a person at a microphone.

Voice-to-voice is measured here, on the client: from the moment the last speech sample of the
file would have left a microphone (the file is streamed at real-time pace) to the arrival of the
first reply audio frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_pipeline.audio import PIPELINE_RATE_HZ, SUPPORTED_RATES_HZ, read_wav, resample, write_wav

from .realtime import RealtimeClient


@dataclass
class TalkResult:
    transcript: str
    reply_text: str
    reply_audio: np.ndarray
    reply_rate_hz: int
    metrics: dict

    def to_json(self) -> dict:
        return {
            "transcript": self.transcript,
            "reply_text": self.reply_text,
            "reply_audio_seconds": round(len(self.reply_audio) / self.reply_rate_hz, 3),
            "metrics": self.metrics,
        }


def speech_end_seconds(audio: np.ndarray, rate_hz: int) -> float:
    """Where the last speech in the file ends, by the same Silero VAD the server uses."""
    from voice_pipeline.engines.vad import FRAME_SAMPLES, SileroVad

    probabilities = SileroVad().process(resample(audio, rate_hz, PIPELINE_RATE_HZ))
    speech = [i for i, p in enumerate(probabilities) if p >= 0.5]
    if not speech:
        return len(audio) / rate_hz
    return (speech[-1] + 1) * FRAME_SAMPLES / PIPELINE_RATE_HZ


async def talk(wav_path: str | Path, url: str, timeout_s: float = 60.0) -> TalkResult:
    audio, rate_hz = read_wav(wav_path)
    if rate_hz not in SUPPORTED_RATES_HZ:
        audio, rate_hz = resample(audio, rate_hz, PIPELINE_RATE_HZ), PIPELINE_RATE_HZ
    speech_end_s = speech_end_seconds(audio, rate_hz)
    async with RealtimeClient(url) as client:
        await client.start(input_audio_format={"encoding": "pcm16", "sample_rate": rate_hz})
        t0 = await client.stream(audio, rate_hz)
        done = asyncio.Event()
        microphone = asyncio.create_task(client.stream_silence_until(rate_hz, done, timeout_s))
        try:
            turn_metrics = await client.wait_for("turn.metrics", timeout_s)
        finally:
            done.set()
            await microphone
        received = client.received
        output_rate = client.session["output_audio_format"]["sample_rate"]
        reply_audio = client.reply_audio()
    finals = received.of_type("conversation.item.input_audio_transcription.completed")
    done_events = received.of_type("response.done")
    metrics = {key: turn_metrics.get(key) for key in ("marks_ms", "stages_ms", "llm_tokens", "audio_out_ms")}
    metrics["server_voice_to_voice_ms"] = turn_metrics.get("voice_to_voice_ms")
    first_audio_t = received.audio[0][0] if received.audio else None
    metrics["voice_to_voice_ms"] = (
        round(1000.0 * (first_audio_t - (t0 + speech_end_s)), 1) if first_audio_t is not None else None
    )
    return TalkResult(
        transcript=finals[0]["transcript"] if finals else "",
        reply_text=done_events[0]["text"] if done_events else "",
        reply_audio=reply_audio,
        reply_rate_hz=output_rate,
        metrics=metrics,
    )


@contextlib.asynccontextmanager
async def in_process_server(config: str | None = None):
    """Load the pipeline in this process and serve it on a free loopback port."""
    from aiohttp import web

    from voice_pipeline.app.server import PipelineServer
    from voice_pipeline.app.settings import Settings

    server = PipelineServer(Settings.load(config))
    await server.load()
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/v1/realtime", server
    finally:
        await runner.cleanup()


async def run_talk(args) -> int:
    if args.url:
        result = await talk(args.input, args.url, args.timeout)
    else:
        async with in_process_server(args.config) as (url, _server):
            result = await talk(args.input, url, args.timeout)
    if args.out:
        write_wav(args.out, result.reply_audio, result.reply_rate_hz)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        summary = result.to_json()
        print(f"you said:   {summary['transcript']}")
        print(f"assistant:  {summary['reply_text']}")
        print(f"reply audio: {summary['reply_audio_seconds']} s" + (f" -> {args.out}" if args.out else ""))
        print(f"voice-to-voice: {summary['metrics']['voice_to_voice_ms']} ms (client-measured)")
        for stage, ms in (summary["metrics"].get("stages_ms") or {}).items():
            print(f"  {stage:<16} {ms:>8.1f} ms")
    if not result.reply_audio.size:
        print("talk: no reply audio was received", file=sys.stderr)
        return 1
    return 0
