"""Pipecat as a system under test: pipecat_driver.py in Pipecat's own venv, played to over a WebSocket.

The bench streams each item's 16 kHz audio at real-time pace in 20 ms frames (then silence) and
takes every time on its own clock, as for this pipeline: voice-to-voice runs from the item's last
speech sample to the first reply audio received. A reply counts only when the peer produced a
transcript and audible audio; otherwise the item is failed (`no_transcript`, `no_audio`,
`silent_reply`, `spoke_over_user`, `timeout`) and not timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import websockets

from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.registry import cache_dir, piper_voice, system_prompt, whisper_model_dir

from voice_pipeline.bench.corpus import SpokenItem
from voice_pipeline.bench.peers.llm_server import BASE_ALIAS, LORA_ALIAS, LlamaServer
from voice_pipeline.bench.peers.venv import PIPECAT, ensure_venv
from voice_pipeline.bench.systems import BenchOptions, TurnSample

DRIVER = Path(__file__).with_name("pipecat_driver.py")
IN_RATE_HZ = 16_000
FRAME_S = 0.02
MIN_REPLY_AUDIO_S = 0.5  # reply audio collected before an item ends (to check it is not silence)
SILENT_RMS = 100.0  # int16 RMS below this (about -50 dBFS) is a silent reply
_TOKENS_BEFORE_DONE = 20
_QUIET_AFTER_END_S = 1.0


@dataclass(frozen=True)
class PipecatVariant:
    turn: str  # "stock": Silero VAD + Smart Turn v3; "silence": VAD then a fixed silence window
    matched: bool  # beam size, threads, max tokens and temperature from this pipeline's settings
    lora: bool  # the voice LoRA on the shared GGUF


class PipecatSystem:
    def __init__(self, name: str, description: str, variant: PipecatVariant, options: BenchOptions,
                 llm: LlamaServer | None = None, progress=print) -> None:
        self.name, self.description, self.variant, self.options = name, description, variant, options
        self.pid: int | None = None
        self.url = ""
        self._llm, self._own_llm = llm, llm is None
        self._progress = progress
        self._process: asyncio.subprocess.Process | None = None
        self._log_path = Path(options.log_dir or ".") / f"peer-{name}.log"
        self._first_turn_pending = True
        self._out_rate_hz = 22_050

    def driver_config(self, settings: Settings) -> dict:
        model, config = piper_voice(settings.tts.voice)
        voice = Path(model).name.removesuffix(".onnx")
        voices = cache_dir() / "bench-peers" / "piper-voices"  # Pipecat looks for <dir>/<voice>.onnx
        voices.mkdir(parents=True, exist_ok=True)
        for source, target in ((model, voices / f"{voice}.onnx"), (config, voices / f"{voice}.onnx.json")):
            if not target.exists():
                target.symlink_to(source)
        matched = self.variant.matched
        return {
            "whisper_dir": whisper_model_dir(settings.stt.model),
            "compute_type": settings.stt.compute_type if settings.stt.compute_type != "auto" else "int8",
            "cpu_threads": (settings.stt.cpu_threads or os.cpu_count() or 1) if matched else 0,
            "beam_size": settings.stt.beam_size if matched else None,
            "piper_dir": str(voices), "voice": voice, "piper_model": model, "piper_config": config,
            "out_rate_hz": settings.tts.output_sample_rate,
            "llm_url": self._llm.url, "llm_model": LORA_ALIAS if self.variant.lora else BASE_ALIAS,
            "system_prompt": system_prompt(settings.llm.system_prompt_file),
            "turn": self.variant.turn, "silence_ms": settings.vad.endpoint_silence_ms,
            "temperature": settings.llm.temperature if matched else None,
            "max_tokens": settings.llm.max_tokens if matched else None,
        }

    async def start(self) -> dict:
        settings = Settings.load(environ={**os.environ, **self.options.extra_env})
        python, install = await asyncio.to_thread(ensure_venv, PIPECAT, self._progress)
        figures: dict = {"install": install}
        if self._llm is None:
            self._llm = LlamaServer(Path(self.options.log_dir or "."), threads=settings.llm.n_threads)
            figures["llm_server"] = await self._llm.start()
        config = self.driver_config(settings)
        self._out_rate_hz = config["out_rate_hz"]
        figures["llm_warm_ms"] = await self._llm.warm(config["llm_model"], config["system_prompt"])
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        started_t = time.monotonic()
        with self._log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                str(python), str(DRIVER), json.dumps(config), stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "HF_HUB_OFFLINE": "1"})  # nothing may come from a model hub
        self.pid = self._process.pid
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), self.options.ready_timeout_s)
        except TimeoutError:
            line = b""
        if not line:
            raise RuntimeError(f"{self.name} did not start: {self._log_path.read_text(errors='replace')[-2000:]}")
        ready = json.loads(line)
        self.url = f"ws://127.0.0.1:{ready['port']}"
        figures.update(process_to_ready_ms=round(1000 * (time.monotonic() - started_t), 1),
                       server={k: v for k, v in ready.items() if k.endswith("_ms")}, versions=ready["versions"],
                       llm_model=config["llm_model"], turn=config["turn"])
        return figures

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 20)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._own_llm and self._llm is not None:
            await self._llm.close()

    async def run_item(self, spoken: SpokenItem, concurrency: int, session_index: int) -> TurnSample:
        sample = TurnSample.new(self.name, spoken, concurrency, session_index)
        sample.first_turn_after_ready, self._first_turn_pending = self._first_turn_pending, False
        heard = Heard(self._out_rate_hz)
        try:
            async with websockets.connect(self.url, max_size=None, compression=None) as ws:
                ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
                assert ready.get("type") == "ready", ready
                t0 = time.monotonic()
                streamer = asyncio.create_task(_stream(ws, spoken.audio_16k, t0))
                try:
                    await asyncio.wait_for(_collect(ws, heard), self.options.turn_timeout_s)
                except TimeoutError:
                    sample.status = "timeout"
                    sample.error = f"no complete reply within {self.options.turn_timeout_s} s; {heard.counts()}"
                finally:
                    streamer.cancel()
                    await asyncio.gather(streamer, return_exceptions=True)
            score(sample, heard, t0 + spoken.speech_start_s, t0 + spoken.speech_end_s)
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            sample.status, sample.error = "error", f"{type(exc).__name__}: {exc}"
        return sample


class Heard:
    """What came back, each with the bench's arrival time."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self.events: list[tuple[float, dict]] = []
        self.audio: list[tuple[float, bytes]] = []

    def of_type(self, kind: str) -> list[tuple[float, dict]]:
        return [(t, e) for t, e in self.events if e.get("type") == kind]

    def counts(self) -> dict:
        return dict(Counter(e.get("type") for _, e in self.events), audio_messages=len(self.audio))

    def done(self) -> bool:
        if not self.audio:
            return False
        audio_s = sum(len(a) for _, a in self.audio) / 2 / self.rate_hz
        ended = bool(self.of_type("llm_end")) or len(self.of_type("llm_text")) >= _TOKENS_BEFORE_DONE
        quiet = time.monotonic() - self.audio[-1][0] > _QUIET_AFTER_END_S
        return ended and (audio_s >= MIN_REPLY_AUDIO_S or quiet)


async def _stream(ws, audio_16k: np.ndarray, t0: float) -> None:
    """The item's audio in 20 ms frames at real-time pace, then silence until cancelled."""
    pcm = (np.clip(audio_16k, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    step = int(IN_RATE_HZ * FRAME_S) * 2
    silence = bytes(step)
    k = 0
    while True:
        await asyncio.sleep(max(0.0, t0 + k * FRAME_S - time.monotonic()))
        chunk = pcm[k * step:(k + 1) * step]
        await ws.send(chunk + silence[len(chunk):] if len(chunk) < step else chunk)
        k += 1


async def _collect(ws, heard: Heard) -> None:
    while not heard.done():
        try:
            message = await asyncio.wait_for(ws.recv(), 0.1)
        except TimeoutError:
            continue
        if isinstance(message, bytes):
            heard.audio.append((time.monotonic(), message))
        else:
            heard.events.append((time.monotonic(), json.loads(message)))


def score(sample: TurnSample, heard: Heard, speech_start_t: float, speech_end_t: float) -> None:
    """Fill the sample from what was heard; failed items keep voice_to_voice_ms None."""
    sample.transcript = " ".join(e["text"].strip() for _, e in heard.of_type("transcript")).strip()
    texts = heard.of_type("llm_text")
    sample.reply_text = "".join(e["text"] for _, e in texts).strip()
    sample.llm_tokens = len(texts) or None
    stops = heard.of_type("user_stopped")
    sample.turns = len(stops)
    sample.premature_endpoints = sum(1 for t, _ in stops if t < speech_end_t)
    first_audio_t = heard.audio[0][0] if heard.audio else None
    sample.spoke_over_user = first_audio_t is not None and first_audio_t < speech_end_t
    sample.marks_ms, sample.stages_ms = _marks(heard, speech_end_t, first_audio_t), _own_metrics(heard, first_audio_t)
    if len(texts) >= _TOKENS_BEFORE_DONE and texts[_TOKENS_BEFORE_DONE - 1][0] > texts[0][0]:
        sample.llm_tokens_per_s = round((_TOKENS_BEFORE_DONE - 1) / (texts[_TOKENS_BEFORE_DONE - 1][0] - texts[0][0]), 1)
    if sample.status != "ok":
        return
    pcm = np.frombuffer(b"".join(a for _, a in heard.audio), dtype="<i2").astype(np.float64)
    if not sample.transcript:
        sample.status = "no_transcript"
    elif first_audio_t is None:
        sample.status = "no_audio"
    elif pcm.size == 0 or float(np.sqrt(np.mean(pcm ** 2))) < SILENT_RMS:
        sample.status = "silent_reply"
    elif sample.spoke_over_user:
        sample.status = "spoke_over_user"
    else:
        sample.voice_to_voice_ms = round(1000.0 * (first_audio_t - speech_end_t), 1)
    if sample.status != "ok":
        sample.error = sample.error or f"heard {heard.counts()}"


def _marks(heard: Heard, speech_end_t: float, first_audio_t: float | None) -> dict:
    """Bench-clock marks relative to the end of speech, up to the first reply audio."""
    limit = first_audio_t if first_audio_t is not None else float("inf")

    def last(kind: str) -> float | None:
        times = [t for t, _ in heard.of_type(kind) if t <= limit]
        return times[-1] if times else None

    texts = [t for t, _ in heard.of_type("llm_text")]
    marks = {"vad_stopped": last("vad_stopped"), "endpoint": last("user_stopped"), "stt_final": last("transcript"),
             "llm_first_token": texts[0] if texts else None,
             "llm_token_20": texts[_TOKENS_BEFORE_DONE - 1] if len(texts) >= _TOKENS_BEFORE_DONE else None,
             "tts_first_audio": last("tts_first_audio"), "first_audio_sent": first_audio_t}
    return {k: round(1000.0 * (t - speech_end_t), 1) for k, t in marks.items() if t is not None}


def _own_metrics(heard: Heard, first_audio_t: float | None) -> dict:
    """Pipecat's own metrics for the turn that was answered, in ms, named `<processor>.<kind>`."""
    limit = first_audio_t if first_audio_t is not None else float("inf")
    kinds = {"TTFBMetricsData": "ttfb", "ProcessingMetricsData": "processing", "TurnMetricsData": "turn_e2e",
             "SmartTurnMetricsData": "turn_e2e", "TextAggregationMetricsData": "text_aggregation"}
    out = {}
    for t, event in heard.of_type("metrics"):
        if t > limit:
            continue
        for item in event["data"]:
            kind = kinds.get(item["kind"])
            value_ms = item.get("e2e_ms") if kind == "turn_e2e" else (item["value"] or 0) * 1000.0
            if kind and value_ms:
                out[f"{item['processor'].split('#')[0]}.{kind}"] = round(value_ms, 1)
    return out
