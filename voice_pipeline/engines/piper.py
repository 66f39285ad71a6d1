"""Piper TTS: one speakable piece of text in, its audio out, synthesized in worker threads.

Piper phonemizes with espeak-ng, whose state is global to the process; piper-tts (1.8) guards
every espeak call with its own process-wide lock, and the voice's onnxruntime session may run
from several threads at once. So `tts.workers` syntheses run at the same time (sessions do not
queue behind each other's long replies), each in a worker thread that holds one of the pool's
slots until its synthesis has returned, however its consumer was cancelled."""

from __future__ import annotations

import logging
import os
from typing import Any, AsyncIterator, Callable

import numpy as np

from voice_pipeline.app.settings import TtsSettings, switch_on
from voice_pipeline.engines.onnx_device import CUDA, onnx_providers
from voice_pipeline.engines.piper_batch import BatchedVoice, PiperBatcher, batched_piper_model
from voice_pipeline.engines.piper_stream import FixedGainVoice, StreamingVoice, split_piper_model
from voice_pipeline.engines.registry import cache_dir, piper_voice
from voice_pipeline.errors import ConfigError, EngineError
from voice_pipeline.threads import ThreadOwnedPool, named_thread_pool

log = logging.getLogger("voice_pipeline.engines.piper")


def espeak_is_locked() -> bool:
    """Whether this piper-tts serializes its espeak-ng calls itself (then syntheses may overlap)."""
    from piper import voice

    return hasattr(voice, "_ESPEAK_PHONEMIZER_LOCK")


def load_voice(voice_name: str, device: str, threads: int, batch_max: int = 0, lane: str = "tts",
               stream_first_ms: int = 0):
    """The Piper voice with an onnxruntime session of `threads` threads (0: onnxruntime's own
    choice, every physical core). piper's own loader takes onnxruntime's defaults, so each worker
    process's synthesis would spread over all the cores: on a 16-core machine with four workers,
    four pools of 16 threads competing for 16 cores. Nor do the session's threads spin while they
    wait for their next operator (onnxruntime's default): on a busy CPU that spinning takes the
    cores from the other stages (at 6 sessions on 2 cores the idle pool thread used more CPU than
    the syntheses themselves; docs/scaling.md). With `batch_max` > 0, a BatchedVoice: its
    sentences share onnxruntime calls, up to `batch_max` rows each, made by a thread `<lane>-batch`
    (engines/piper_batch.py). Otherwise, with `stream_first_ms` > 0, a StreamingVoice: each sentence's
    audio in windows, the first of about that many ms (engines/piper_stream.py)."""
    import json

    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    model, config = piper_voice(voice_name)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = ["CPUExecutionProvider"]
    if CUDA in onnx_providers(device):  # as piper does: no exhaustive cuDNN search per input shape
        providers.insert(0, (CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}))
    with open(config, encoding="utf-8") as config_file:
        piper_config = PiperConfig.from_dict(json.load(config_file))
    if batch_max <= 0 and stream_first_ms > 0:
        try:
            return streaming_voice(PiperVoice(config=piper_config, session=None), model, stream_first_ms,
                                   lambda graph: onnxruntime.InferenceSession(graph, sess_options=options,
                                                                              providers=providers))
        except ValueError as exc:  # a graph this cannot cut: whole sentences, as piper makes them
            log.warning("Piper voice %s: sentences synthesized whole (%s)", voice_name, exc)
    if batch_max <= 0:
        return PiperVoice(config=piper_config,
                          session=onnxruntime.InferenceSession(model, sess_options=options, providers=providers))
    batched_model, frames_output = batched_piper_model(model)
    session = onnxruntime.InferenceSession(batched_model, sess_options=options, providers=providers)
    # Made here, the batcher's thread has this thread's nice value (the later lane's loader's)
    batcher = PiperBatcher(session, frames_output, hop_length=piper_config.hop_length, batch_max=batch_max,
                           name=f"{lane}-batch")
    return BatchedVoice(PiperVoice(config=piper_config, session=session), batcher)


def streaming_voice(voice: Any, model: str, first_ms: int, session: Callable[[bytes], Any]) -> StreamingVoice:
    """`voice` (a PiperVoice without a session) synthesizing through sessions of its model's three
    stages; its profile (contexts, gain) cached under the cache directory after the first start."""
    graphs = split_piper_model(model)
    hop, rate = voice.config.hop_length, voice.config.sample_rate
    return StreamingVoice(voice, (session(graphs.front), session(graphs.flow), session(graphs.decoder)), graphs,
                          first_frames=max(1, round(first_ms * rate / hop / 1000)),
                          profile_cache=cache_dir() / "piper-stream", model_path=model)


def load_voice_at_nice(voice_name: str, device: str, threads: int, nice: int, batch_max: int = 0):
    """`load_voice` from a thread at `nice`. onnxruntime makes the session's intra-op threads while
    loading, and a Linux thread starts with its creator's nice value: so every thread that computes
    this session's syntheses runs at `nice`, not only the one that calls it."""
    loader = named_thread_pool(1, "tts-later-ort", nice)  # the name its onnxruntime threads inherit
    try:
        return loader.submit(load_voice, voice_name, device, threads, batch_max, "tts-later").result()
    finally:
        loader.shutdown()


def tts_batching(settings: TtsSettings, device: str | None = None) -> bool:
    """`tts.batch` for a lane on `device` (default `tts.device`): "auto" batches with CUDA only (on
    the CPU a batch padded to its longest row cost more than its rows one by one: 1.8 s against
    1.2 s for six sentences on one core)."""
    try:
        return switch_on(settings.batch, auto=CUDA in onnx_providers(device or settings.device))
    except ConfigError as exc:
        raise ConfigError(f"tts.batch: {exc}") from None


def lane_threads(settings: TtsSettings, batch_max: int) -> int:
    """Synthesis threads of a lane: `tts.workers`, or with batching one per row (each waits for
    its row's call); one where piper does not lock espeak itself."""
    if not espeak_is_locked():
        return 1
    return batch_max if batch_max else max(1, settings.workers)


def synthesis_threads(configured: int, workers: int) -> int:
    """`tts.threads`, or (0) the cores shared out among the server's worker processes."""
    return configured if configured > 0 else max(1, (os.cpu_count() or 1) // max(1, workers))


class PiperTts:
    def __init__(self, settings: TtsSettings, threads: int = 0) -> None:
        """`threads`: onnxruntime threads of the voice's session (0: onnxruntime's default)."""
        from piper import SynthesisConfig

        model = piper_voice(settings.voice)[0]
        batch_max = max(1, settings.batch_max) if tts_batching(settings) else 0
        voice = load_voice(settings.voice, settings.device, threads, batch_max, stream_first_ms=settings.stream_first_ms)
        workers = lane_threads(settings, batch_max)
        # Two lanes: a reply's first piece (someone is waiting to hear it) and the later pieces
        # (needed only once the audio before them has played). The later lane has its own session
        # of the voice, loaded at a lower CPU priority, and its own threads at that priority: none
        # of its work holds a first piece back or takes the CPU from one (sharing one session, its
        # syntheses ran on the session's intra-op threads at full priority). Without espeak's own
        # lock the two lanes would share espeak: one lane, as before. `tts.later_device` may put the
        # later lane on another device (batched with CUDA under "auto"). The first lane makes a
        # reply's first piece in windows (`tts.stream_first_ms`, `synthesize(first=True)`); later
        # pieces are wanted whole before the audio ahead of them has played, so they are made whole
        # (the later lane at the first lane's gain).
        self._voice = ThreadOwnedPool([voice] * workers, thread_name_prefix="tts")
        self._later = self._voice
        later_voice, later_device, later_batch = voice, settings.later_device or settings.device, batch_max
        if espeak_is_locked() and (settings.later_nice > 0 or later_device != settings.device):
            later_batch = max(1, settings.batch_max) if tts_batching(settings, later_device) else 0
            later_voice = load_voice_at_nice(settings.voice, later_device, threads, settings.later_nice, later_batch)
            later = FixedGainVoice(later_voice, voice.profile.gain) if isinstance(voice, StreamingVoice) else later_voice
            self._later = ThreadOwnedPool([later] * lane_threads(settings, later_batch),
                                          thread_name_prefix="tts-later", nice=settings.later_nice)
        self._config = SynthesisConfig(length_scale=settings.length_scale)
        self.sample_rate_hz = voice.config.sample_rate
        self.batched = batch_max > 0 or later_batch > 0  # either lane
        # Each batching lane's PiperBatcher (its calls and rows, for the TTS probe)
        self.batchers = [v.batcher for v in {id(v): v for v in (voice, later_voice)}.values()
                         if isinstance(v, BatchedVoice)]
        self.name = f"piper:{settings.voice}"
        stat = os.stat(model)
        gain = f":gain{voice.profile.gain:.4f}" if isinstance(voice, StreamingVoice) else ""  # else each its peak's
        self.cache_key = f"{self.name}:{settings.length_scale}:{stat.st_size}:{int(stat.st_mtime)}{gain}"

    async def synthesize(self, text: str, *, urgent: bool = False, first: bool = False) -> AsyncIterator[np.ndarray]:
        """A reply's first piece in windows where the first lane streams; any other piece whole (the
        windows cost CPU, and a later piece's audio is wanted whole before the audio ahead of it
        has played)."""
        lane = self._voice if urgent else self._later

        def synthesis(voice: Any) -> Any:
            if isinstance(voice, StreamingVoice):
                return voice.synthesize(text, self._config, windows=first)
            return voice.synthesize(text, self._config)

        chunks = lane.stream(synthesis, urgent=urgent)
        try:
            async for chunk in chunks:
                yield chunk.audio_float_array
        except Exception as exc:
            raise EngineError("tts", f"{type(exc).__name__}: {exc}") from exc
        finally:
            await chunks.aclose()

    async def warm_up(self) -> None:
        """One synthesis in each lane: each voice session's first onnxruntime run (slower than the
        rest) happens before the first session does. The lanes' own threads exist from the start
        (ThreadOwnedPool makes them all)."""
        for urgent in (True, False):
            async for _ in self.synthesize("Ready.", urgent=urgent, first=urgent):
                pass
