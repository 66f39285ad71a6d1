"""The naive baseline: a sequential pipeline built in-process from the same engine classes.

Per item: the same Silero VAD finds the end of the turn after the same fixed silence
(settings.vad.endpoint_silence_ms); then the whole utterance is transcribed, the whole LLM answer
is generated, the whole answer is synthesized, and only then is audio "sent". Its voice-to-voice
is the time from the true end of speech to that moment: the endpoint silence it waited for (from
the VAD frames, as it would pass in real time) plus the measured compute of each stage. The
engines run one at a time on the same models as the server; nothing overlaps.
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np

from voice_pipeline.app.settings import Settings
from voice_pipeline.audio import PIPELINE_RATE_HZ
from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.reply.chunker import clean_for_speech

from voice_pipeline.bench.corpus import SpokenItem
from voice_pipeline.bench.systems import BenchOptions, TurnSample

_VAD_FRAME_MS = 32.0


class NaiveSystem:
    name = "naive"
    description = "naive sequential pipeline in-process"

    def __init__(self, options: BenchOptions, settings: Settings | None = None) -> None:
        self.options = options
        self.settings = settings or Settings.load(environ={**os.environ, **options.extra_env})
        self.pid = os.getpid()
        self._engines = None
        self._vad_model = None  # the offline endpoint loop's own Silero session (sessions stream theirs)
        self._first_turn_pending = True

    async def start(self) -> dict:
        from voice_pipeline.app.compose import load_engines

        started_t = time.monotonic()
        from voice_pipeline.engines.vad import load_silero_session

        self._engines, timings = await load_engines(self.settings)
        self._vad_model = await asyncio.to_thread(load_silero_session)
        return {"process_to_ready_ms": round(1000 * (time.monotonic() - started_t), 1), "server": timings,
                "note": "models loaded into the already-running benchmark process"}

    async def close(self) -> None:
        self._engines = None

    async def run_item(self, spoken: SpokenItem, concurrency: int, session_index: int) -> TurnSample:
        sample = TurnSample.new(self.name, spoken, concurrency, session_index)
        sample.first_turn_after_ready, self._first_turn_pending = self._first_turn_pending, False
        engines = self._engines
        start_ms, speech_end_ms, endpoint_ms = await asyncio.to_thread(self._endpoint, spoken.audio_16k)
        if endpoint_ms is None:
            sample.status = "no_reply"
            return sample
        sample.turns = 1
        true_end_ms = 1000.0 * spoken.speech_end_s
        sample.premature_endpoints = int(speech_end_ms < true_end_ms - 250.0)
        waited_ms = max(0.0, endpoint_ms - true_end_ms)

        pad_ms = self.settings.vad.prefix_padding_ms
        audio = _slice(spoken.audio_16k, start_ms - pad_ms, endpoint_ms)
        t = time.perf_counter()
        transcript = await engines.stt.transcribe(audio, final=True)
        stt_ms = _since(t)
        sample.transcript = transcript.text
        if not transcript.text.strip():
            sample.status = "no_reply"
            return sample

        messages = [ChatMessage("system", engines.system_prompt), ChatMessage("user", transcript.text)]
        text, tokens, first_token_ms, token20_ms, llm_ms = await self._whole_answer(messages)
        t = time.perf_counter()
        tts_audio = [chunk async for chunk in engines.tts.synthesize(clean_for_speech(text))]
        tts_ms = _since(t)
        audio_s = sum(len(a) for a in tts_audio) / engines.tts.sample_rate_hz

        sample.reply_text, sample.llm_tokens = text, tokens
        marks = {"speech_end": 0.0, "endpoint": waited_ms, "stt_final": waited_ms + stt_ms}
        marks["llm_first_token"] = marks["stt_final"] + first_token_ms
        if token20_ms is not None:
            marks["llm_token_20"] = marks["stt_final"] + token20_ms
        marks["first_piece"] = marks["stt_final"] + llm_ms
        marks["tts_first_audio"] = marks["first_audio_sent"] = marks["first_piece"] + tts_ms
        sample.marks_ms = {k: round(v, 1) for k, v in marks.items()}
        sample.stages_ms = {"endpointing": round(waited_ms, 1), "stt": round(stt_ms, 1), "llm_first_token": round(first_token_ms, 1),
                            "first_piece": round(llm_ms - first_token_ms, 1), "tts": round(tts_ms, 1), "send": 0.0}
        sample.voice_to_voice_ms = sample.server_voice_to_voice_ms = sample.marks_ms["first_audio_sent"]
        if tokens > 1 and llm_ms > first_token_ms:
            sample.llm_tokens_per_s = round((tokens - 1) * 1000.0 / (llm_ms - first_token_ms), 1)
        if audio_s > 0:
            sample.tts_real_time_factor = round(tts_ms / 1000.0 / audio_s, 4)
        return sample

    async def _whole_answer(self, messages) -> tuple[str, int, float, float | None, float]:
        parts: list[str] = []
        first_ms = token20_ms = None
        t = time.perf_counter()
        async for delta in self._engines.llm.stream(messages, max_tokens=self.settings.llm.max_tokens):
            parts.append(delta)
            if len(parts) == 1:
                first_ms = _since(t)
            elif len(parts) == 20:
                token20_ms = _since(t)
        total_ms = _since(t)
        return "".join(parts).strip(), len(parts), first_ms if first_ms is not None else total_ms, token20_ms, total_ms

    def _endpoint(self, audio_16k: np.ndarray) -> tuple[float, float, float | None]:
        """(speech start, speech end, endpoint) in stream ms from a plain VAD loop, or None endpoint."""
        from voice_pipeline.engines.vad import SileroVad

        vad = SileroVad(self._vad_model)
        cfg = self.settings.vad
        run_ms, start_ms, end_ms, speaking = 0.0, 0.0, 0.0, False
        position_ms = 0.0
        for probability in vad.process(audio_16k):
            position_ms += _VAD_FRAME_MS
            if probability >= cfg.threshold:
                if not speaking and run_ms == 0.0:
                    start_ms = position_ms - _VAD_FRAME_MS
                run_ms += _VAD_FRAME_MS
                speaking = speaking or run_ms >= cfg.min_speech_ms
                end_ms = position_ms if speaking else end_ms
            else:
                run_ms = 0.0 if not speaking else run_ms
                if speaking and position_ms - end_ms >= cfg.endpoint_silence_ms:
                    return start_ms, end_ms, position_ms
        return start_ms, end_ms, None


def _slice(audio: np.ndarray, start_ms: float, end_ms: float) -> np.ndarray:
    start = max(0, int(start_ms * PIPELINE_RATE_HZ / 1000))
    return audio[start : int(end_ms * PIPELINE_RATE_HZ / 1000)]


def _since(t: float) -> float:
    return 1000.0 * (time.perf_counter() - t)
