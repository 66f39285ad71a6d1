"""This pipeline as a system under test: `voice-pipeline serve` in a subprocess, driven over
its WebSocket by RealtimeClient at real-time pace, exactly as a client would use it."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import websockets

from voice_pipeline.audio import PIPELINE_RATE_HZ
from voice_pipeline_client.realtime import RealtimeClient

from voice_pipeline.bench.corpus import SpokenItem
from voice_pipeline.bench.systems import BenchOptions, TurnSample, server_env
from voice_pipeline.bench.procstat import stop_process
from voice_pipeline.bench.stats import playback_gaps_ms

_POLL_S = 0.02
_TOKENS_BEFORE_CANCEL = 20
_REFUSALS = ("server_busy", "server_draining", "not_ready")
_FINAL_TURN_SLACK_MS = 800.0  # a turn ending this close to the true speech end is the final one (pauses are 1 s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerSystem:
    def __init__(self, name: str, description: str, env: dict[str, str], options: BenchOptions) -> None:
        self.name, self.description = name, description
        self.env = {"VP_SERVER_MAX_SESSIONS": str(options.max_sessions), **env}
        self.options = options
        self.pid: int | None = None
        self.url = ""
        self._process: subprocess.Popen | None = None
        self._log_path = Path(options.log_dir or ".") / f"server-{name}.log"
        self._first_turn_pending = True

    async def start(self) -> dict:
        port = free_port()
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self._log_path.open("wb")
        spawned_t = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "voice_pipeline.app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(self.env), stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.pid = self._process.pid
        ready = await self._wait_ready(f"http://127.0.0.1:{port}/ready", spawned_t)
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"
        return {"process_to_ready_ms": round(1000 * (time.monotonic() - spawned_t), 1),
                "server": ready.get("cold_start", {})}

    async def _wait_ready(self, url: str, spawned_t: float) -> dict:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - spawned_t < self.options.ready_timeout_s:
                if self._process.poll() is not None:
                    tail = self._log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"server {self.name} exited with {self._process.returncode}: {tail}")
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            return await response.json()
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(_POLL_S)
        raise TimeoutError(f"server {self.name} was not ready after {self.options.ready_timeout_s} s")

    async def close(self) -> None:
        await stop_process(self._process)

    async def run_item(self, spoken: SpokenItem, concurrency: int, session_index: int) -> TurnSample:
        sample = TurnSample.new(self.name, spoken, concurrency, session_index)
        sample.first_turn_after_ready, self._first_turn_pending = self._first_turn_pending, False
        try:
            async with RealtimeClient(self.url) as client:
                refusal = await _start(client, {"input_audio_format": {"encoding": "pcm16", "sample_rate": PIPELINE_RATE_HZ}})
                if refusal is not None:  # admission turned it away (full, or its measured latency too high)
                    sample.status, sample.error = "refused", refusal
                    return sample
                t0 = time.monotonic()
                streamer = asyncio.create_task(client.stream(spoken.audio_16k, PIPELINE_RATE_HZ, t0))
                try:
                    await asyncio.wait_for(_play(client, spoken, t0, sample, self.options.full_replies),
                                           self.options.turn_timeout_s)
                except TimeoutError:
                    seen = Counter(event.get("type") for _, event in client.received.events)
                    sample.status = "timeout"
                    sample.error = f"no complete reply within {self.options.turn_timeout_s} s; received {dict(seen)}"
                finally:
                    streamer.cancel()
                    await asyncio.gather(streamer, return_exceptions=True)
        except TimeoutError:
            sample.status, sample.error = "timeout", "no session.created"
        except (OSError, RuntimeError) as exc:  # a refused or dropped connection is a result, not a crash
            sample.status, sample.error = "error", f"{type(exc).__name__}: {exc}"
        return sample


async def _start(client: RealtimeClient, session: dict, timeout_s: float = 60.0) -> str | None:
    """session.start, then session.created (None) or the refusal that came instead ("code: message")."""
    try:
        await client.send({"type": "session.start", "session": session})
    except websockets.ConnectionClosed:
        pass  # refused and closed at once: the error event is already in
    outcome = await asyncio.wait_for(_until(lambda: _created_or_refused(client)), timeout_s)
    if outcome == "":
        client.session = client.received.of_type("session.created")[0]["session"]
        return None
    return outcome


def _created_or_refused(client: RealtimeClient) -> str | None:
    if client.received.of_type("session.created"):
        return ""
    for event in client.received.of_type("error"):
        error = event.get("error", {})
        if error.get("code") in _REFUSALS:
            return f"{error['code']}: {error.get('message', '')}"
    return None


async def _play(client: RealtimeClient, spoken: SpokenItem, t0: float, sample: TurnSample, full: bool = False) -> None:
    """Wait for the reply to the whole question; cancel it once its first audio and 20 tokens are in
    (the rest of the reply would only be paced out at real time), or with `full` wait for all of it;
    then read its turn.metrics."""
    final_end_ms = 1000.0 * spoken.speech_end_s - _FINAL_TURN_SLACK_MS
    turn_id = await _until(lambda: _final_turn(client, final_end_ms))
    response_id = await _until(lambda: _response_of(client, turn_id))
    if response_id == "":
        sample.status = "no_reply"
    else:
        if full:
            await _until(lambda: _reply_done(client, response_id))
        else:
            await _until(lambda: _reply_advanced(client, response_id))
            await client.send({"type": "response.cancel"})
        metrics = await client.wait_for("turn.metrics", turn_id=turn_id)
        _fill_from_metrics(sample, metrics)
        started_t = client.received.first_time("output_audio_buffer.started", response_id=response_id)
        first_audio_t = next((t for t, _ in client.received.audio if started_t is not None and t >= started_t), None)
        if first_audio_t is not None:
            sample.voice_to_voice_ms = round(1000.0 * (first_audio_t - (t0 + spoken.speech_end_s)), 1)
            if full:
                sample.playback_gaps_ms = _playback_gaps(client, response_id, first_audio_t)
        else:
            sample.status = "no_audio"
        if sample.status == "ok" and "stt_final" not in sample.marks_ms:
            sample.status = "stt_fallback"  # the final transcript missed its budget: a fixed apology was spoken
        done = [e for e in client.received.of_type("response.done") if e.get("response_id") == response_id]
        sample.reply_text = done[0].get("text", "") if done else ""
        sample.reply_status = done[0].get("status", "") if done else ""
    user_done_t = t0 + spoken.speech_end_s
    sample.spoke_over_user = any(t < user_done_t for t, _ in client.received.audio)
    stops = client.received.of_type("input_audio_buffer.speech_stopped")
    sample.turns = len(stops)
    sample.premature_endpoints = sum(1 for e in stops if e.get("audio_end_ms", 0) < final_end_ms)
    finals = client.received.of_type("conversation.item.input_audio_transcription.completed")
    sample.transcript = " ".join(e.get("transcript", "") for e in finals).strip()


def _playback_gaps(client: RealtimeClient, response_id: str, first_audio_t: float) -> list[float]:
    """The reply's audio (from its first frame to its response.done) played as it arrived: its stalls."""
    done_t = client.received.first_time("response.done", response_id=response_id) or float("inf")
    rate_hz = int(client.session.get("output_audio_format", {}).get("sample_rate", 22_050))
    frames = [(t, len(samples)) for t, samples in client.received.audio if first_audio_t <= t <= done_t]
    return playback_gaps_ms(frames, rate_hz)


async def _until(probe):
    while (value := probe()) is None:
        await asyncio.sleep(_POLL_S)
    return value


def _final_turn(client: RealtimeClient, final_end_ms: float) -> str | None:
    for event in client.received.of_type("input_audio_buffer.speech_stopped"):
        if event.get("audio_end_ms", 0) >= final_end_ms:
            return event["turn_id"]
    return None


def _response_of(client: RealtimeClient, turn_id: str) -> str | None:
    """The turn's response id; "" when its transcript was empty (no reply will come)."""
    for event in client.received.of_type("response.created"):
        if event.get("turn_id") == turn_id:
            return event["response_id"]
    for event in client.received.of_type("conversation.item.input_audio_transcription.completed"):
        if event.get("turn_id") == turn_id and not event.get("transcript", "").strip():
            return ""
    for event in client.received.of_type("turn.metrics"):
        if event.get("turn_id") == turn_id:
            return ""
    return None


def _reply_done(client: RealtimeClient, response_id: str) -> bool | None:
    return True if any(e.get("response_id") == response_id for e in client.received.of_type("response.done")) else None


def _reply_advanced(client: RealtimeClient, response_id: str) -> bool | None:
    received = client.received
    started_t = received.first_time("output_audio_buffer.started", response_id=response_id)
    finished = any(e.get("response_id") == response_id for e in received.of_type("response.done"))
    if finished:
        return True
    if started_t is None or not any(t >= started_t for t, _ in received.audio[-50:]):
        return None
    deltas = sum(1 for e in received.of_type("response.text.delta") if e.get("response_id") == response_id)
    text_done = any(e.get("response_id") == response_id for e in received.of_type("response.text.done"))
    return True if deltas >= _TOKENS_BEFORE_CANCEL or text_done else None


def _fill_from_metrics(sample: TurnSample, metrics: dict) -> None:
    sample.marks_ms = metrics.get("marks_ms") or {}
    sample.stages_ms = metrics.get("stages_ms") or {}
    sample.server_voice_to_voice_ms = metrics.get("voice_to_voice_ms")
    sample.llm_tokens = metrics.get("llm_tokens")
    sample.speculation = metrics.get("speculation", "")
    sample.eot = {key: value for key, value in metrics.items() if key.startswith("eot_")}
    sample.speculation_misses = metrics.get("speculation_misses", 0)
    sample.speculation_wasted_cpu_ms = metrics.get("speculation_wasted_cpu_ms", 0.0)
    first, twentieth = sample.marks_ms.get("llm_first_token"), sample.marks_ms.get("llm_token_20")
    if first is not None and twentieth is not None and twentieth > first:
        sample.llm_tokens_per_s = round(19 * 1000.0 / (twentieth - first), 1)
