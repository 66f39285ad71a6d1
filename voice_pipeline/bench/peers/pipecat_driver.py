"""A stock Pipecat voice bot behind a WebSocket, for the benchmark (runs in the peer's own venv).

Started by voice_pipeline/bench/peers/pipecat_system.py with the Pipecat venv's python; imports
nothing from voice_pipeline. One WebSocket connection is one conversation: a fresh Pipecat
pipeline (transport in -> Whisper STT -> user aggregator with Silero VAD and the turn strategy ->
OpenAI-compatible LLM -> Piper TTS -> transport out -> assistant aggregator), as a Pipecat bot
builds one per session. Binary messages in: PCM16 mono at 16 kHz, streamed by the bench at real
time. Binary messages out: the bot's PCM16 audio at `out_rate_hz`, written by a transport that
paces like Pipecat's own WebSocket transports. Text messages out: JSON events seen by a frame
observer (turn stops, transcripts, LLM text, Pipecat's own metrics), so the bench can time them.

The whisper directory, the Piper voice and the LLM server all come from the bench's config (argv[1],
JSON): no model is downloaded. The models are loaded once per process (a server would do the same)
and shared by the sessions, which the bench runs one at a time.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import websockets
from loguru import logger

from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    MetricsFrame,
    OutputAudioRawFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper import tts as piper_tts
from pipecat.services.whisper import stt as whisper_stt
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

IN_RATE_HZ = 16_000


def _load_models(config: dict) -> dict:
    """Load whisper and Piper once and make Pipecat's services reuse them (no hub download)."""
    loads_ms = {}
    t = time.monotonic()
    threads = {"cpu_threads": config["cpu_threads"]} if config.get("cpu_threads") else {}
    model = whisper_stt.WhisperModel(config["whisper_dir"], device="cpu", compute_type=config["compute_type"], **threads)
    if config.get("beam_size"):
        model.transcribe = functools.partial(model.transcribe, beam_size=config["beam_size"])
    whisper_stt.WhisperModel = lambda *args, **kwargs: model
    loads_ms["stt_load_ms"] = round(1000 * (time.monotonic() - t), 1)
    t = time.monotonic()
    voice = piper_tts.PiperVoice.load(config["piper_model"], config_path=config["piper_config"])
    piper_tts.PiperVoice.load = staticmethod(lambda *args, **kwargs: voice)
    loads_ms["tts_load_ms"] = round(1000 * (time.monotonic() - t), 1)
    return loads_ms


class SocketInput(BaseInputTransport):
    def __init__(self, ready: asyncio.Event, params: TransportParams) -> None:
        super().__init__(params)
        self._ready = ready

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._ready.set()

    async def feed(self, pcm: bytes) -> None:
        await self.push_audio_frame(InputAudioRawFrame(audio=pcm, sample_rate=IN_RATE_HZ, num_channels=1))


class SocketOutput(BaseOutputTransport):
    """Writes the bot's audio to the socket, paced like Pipecat's WebSocket transports."""

    def __init__(self, ws, params: TransportParams) -> None:
        super().__init__(params)
        self._ws = ws
        self._next_send_t = 0.0
        self._send_interval_s = 0.0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self._send_interval_s = (self.audio_chunk_size / self.sample_rate) / 2
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        try:
            await self._ws.send(frame.audio)
        except websockets.ConnectionClosed:
            return False
        now = time.monotonic()
        sleep_s = max(0.0, self._next_send_t - now)
        await asyncio.sleep(sleep_s)
        self._next_send_t = (time.monotonic() if sleep_s == 0 else self._next_send_t) + self._send_interval_s
        return True


class EventObserver(BaseObserver):
    """Sends the frames the bench times, once each, as JSON text messages."""

    def __init__(self, ws) -> None:
        super().__init__()
        self._ws = ws
        self._seen: set[int] = set()
        self._tts_audio = False

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if frame.id in self._seen:
            return
        event = self._event(frame)
        if event is None:
            return
        self._seen.add(frame.id)
        try:
            await self._ws.send(json.dumps(event))
        except websockets.ConnectionClosed:
            pass

    def _event(self, frame) -> dict | None:
        if isinstance(frame, UserStartedSpeakingFrame):
            return {"type": "user_started"}
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            return {"type": "vad_stopped"}
        if isinstance(frame, UserStoppedSpeakingFrame):
            return {"type": "user_stopped"}
        if isinstance(frame, TranscriptionFrame):
            return {"type": "transcript", "text": frame.text}
        if isinstance(frame, LLMTextFrame):
            return {"type": "llm_text", "text": frame.text}
        if isinstance(frame, LLMFullResponseEndFrame):
            return {"type": "llm_end"}
        if isinstance(frame, TTSAudioRawFrame) and not self._tts_audio:
            self._tts_audio = True
            return {"type": "tts_first_audio"}
        if isinstance(frame, BotStartedSpeakingFrame):
            return {"type": "bot_started"}
        if isinstance(frame, MetricsFrame):
            items = [{"kind": type(d).__name__, "processor": d.processor,
                      "value": d.value if isinstance(getattr(d, "value", None), (int, float)) else None,
                      **({"e2e_ms": d.e2e_processing_time_ms, "complete": d.is_complete}
                         if hasattr(d, "e2e_processing_time_ms") else {})}
                     for d in frame.data]
            return {"type": "metrics", "data": items}
        return None


def _turn_params(config: dict) -> LLMUserAggregatorParams:
    if config["turn"] == "stock":  # Silero VAD with its defaults, then Smart Turn v3 (the bundled ONNX)
        return LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    # Matched to the pipeline's 300 ms endpoint: VAD stop after its default 0.2 s, then the rest as speech timeout.
    vad_stop_s = 0.2
    stop = SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=max(0.0, config["silence_ms"] / 1000 - vad_stop_s))
    return LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=vad_stop_s)),
                                   user_turn_strategies=UserTurnStrategies(stop=[stop]))


async def _session(ws, config: dict) -> None:
    params = TransportParams(audio_in_enabled=True, audio_out_enabled=True, audio_in_sample_rate=IN_RATE_HZ,
                             audio_out_sample_rate=config["out_rate_hz"])
    ready = asyncio.Event()
    transport_in, transport_out = SocketInput(ready, params), SocketOutput(ws, params)
    stt = whisper_stt.WhisperSTTService(device="cpu", compute_type=config["compute_type"],
                                        settings=whisper_stt.WhisperSTTService.Settings(model=config["whisper_dir"]))
    llm_settings = {k: config[k] for k in ("temperature", "max_tokens") if config.get(k) is not None}
    llm = OpenAILLMService(api_key="local", base_url=config["llm_url"],
                           settings=OpenAILLMService.Settings(model=config["llm_model"], **llm_settings))
    tts = piper_tts.PiperTTSService(settings=piper_tts.PiperTTSService.Settings(voice=config["voice"]),
                                    download_dir=Path(config["piper_dir"]))
    context = LLMContext(messages=[{"role": "system", "content": config["system_prompt"]}])
    aggregators = LLMContextAggregatorPair(context, user_params=_turn_params(config))
    pipeline = Pipeline([transport_in, stt, aggregators.user(), llm, tts, transport_out, aggregators.assistant()])
    worker = PipelineWorker(
        pipeline, observers=[EventObserver(ws)], enable_rtvi=False, idle_timeout_secs=None,
        params=PipelineParams(audio_in_sample_rate=IN_RATE_HZ, audio_out_sample_rate=config["out_rate_hz"],
                              enable_metrics=True),
    )
    runner = WorkerRunner(handle_sigint=False)
    run = asyncio.create_task(runner.run(worker))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        await ws.send(json.dumps({"type": "ready"}))
        async for message in ws:
            if isinstance(message, bytes):
                await transport_in.feed(message)
    except websockets.ConnectionClosed:
        pass
    finally:
        await worker.cancel()
        await asyncio.wait_for(run, 10)


async def _main(config: dict) -> None:
    loads_ms = _load_models(config)
    async with websockets.serve(lambda ws: _session(ws, config), "127.0.0.1", config.get("port", 0),
                                max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        versions = {name: version(name) for name in ("pipecat-ai", "faster-whisper", "piper-tts", "onnxruntime")}
        print(json.dumps({"ready": True, "port": port, "versions": versions, **loads_ms}), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    asyncio.run(_main(json.loads(sys.argv[1])))
