"""Piper's sentences of many replies in one onnxruntime call (with CUDA, `tts.batch`).

Why: the voice's graph has ~2,700 operators, so on a GPU a call's cost is mostly launching them
and the copies between them, whatever the rows; one call per sentence made 64 sessions' first
pieces queue for the GPU (docs/scaling.md).

`batched_piper_model` adds one output to the voice's graph: each row's audio length in frames,
which the graph computes anyway (the clipped sum of its rounded phoneme durations, cast to int64)
to pad the batch to its longest row. Padded phonemes and frames are masked through the model (VITS
is trained on padded batches), so a row cut at its length is its audio alone: on real sentences
with the noise off, within 1e-4 of the unbatched call (tests/unit/test_piper_batch.py).

`PiperBatcher` owns a session of that model and the one thread that calls it: sentences queued
while a call runs go together into the next (up to `batch_max` rows with the same scales, in
order of arrival). `BatchedVoice` is a PiperVoice's `synthesize` with each sentence's model call
made through a batcher; the synthesis threads that call it block until their row is back, as they
would in their own onnxruntime call.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voice_pipeline.engines import onnx_wire as wire
from voice_pipeline.errors import EngineError
from voice_pipeline.threads import lower_thread_priority, name_native_thread

log = logging.getLogger("voice_pipeline.engines.piper_batch")


def batched_piper_model(path: Path) -> tuple[bytes, str]:
    """The voice's ONNX model with each row's length in frames as an extra output, and that output's
    name; raises ValueError for a graph without Ceil -> ReduceSum -> Clip -> Cast."""
    model = wire.fields(Path(path).read_bytes())
    found: list[str] = []

    def add_output(graph_bytes: bytes) -> bytes:
        graph = wire.fields(graph_bytes)
        nodes = [wire.message(value) for number, _, value in graph if number == wire.GRAPH_NODE]
        found.append(_frames_tensor(nodes))
        dim = wire.encode([(wire.DIM_PARAM, wire.LENGTH_DELIMITED, b"batch_size")])
        shape = wire.encode([(wire.SHAPE_DIM, wire.LENGTH_DELIMITED, dim)])
        tensor = wire.encode([(wire.TENSOR_ELEM_TYPE, wire.VARINT, wire.INT64),
                              (wire.TENSOR_SHAPE, wire.LENGTH_DELIMITED, shape)])
        value_type = wire.encode([(wire.TYPE_TENSOR, wire.LENGTH_DELIMITED, tensor)])
        output = wire.encode([(wire.VALUE_INFO_NAME, wire.LENGTH_DELIMITED, found[0].encode()),
                              (wire.VALUE_INFO_TYPE, wire.LENGTH_DELIMITED, value_type)])
        return wire.encode(graph + [(wire.GRAPH_OUTPUT, wire.LENGTH_DELIMITED, output)])

    edited = wire.encode(wire.edit(model, wire.MODEL_GRAPH, add_output))
    return edited, found[0]


def _frames_tensor(nodes: list[list[wire.Field]]) -> str:
    """The output of Cast(Clip(ReduceSum(Ceil(durations)))): each row's length in frames."""
    def op(node: list[wire.Field]) -> str | None:
        return wire.string(node, wire.NODE_OP_TYPE)

    consumers: dict[str, list[list[wire.Field]]] = {}
    for node in nodes:
        for name in wire.strings(node, wire.NODE_INPUT):
            consumers.setdefault(name, []).append(node)
    chain = ["ReduceSum", "Clip", "Cast"]
    for ceil in (node for node in nodes if op(node) == "Ceil"):
        node = ceil
        for wanted in chain:
            following = [n for out in wire.strings(node, wire.NODE_OUTPUT) for n in consumers.get(out, [])
                         if op(n) == wanted]
            if len(following) != 1:
                break
            node = following[0]
        else:
            return wire.strings(node, wire.NODE_OUTPUT)[0]
    raise ValueError("no Ceil -> ReduceSum -> Clip -> Cast in the voice's graph (not a Piper VITS export?)")


@dataclass(eq=False)
class _Row:
    ids: list[int]
    scales: tuple[float, float, float]  # noise, length, noise_w
    speaker: int | None
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class PiperBatcher:
    """One session of the batched model and the one thread that calls it for every synthesis thread."""

    def __init__(self, session: Any, frames_output: str, *, hop_length: int, batch_max: int,
                 name: str = "tts-batch", nice: int = 0) -> None:
        self._session = session
        self._outputs = [session.get_outputs()[0].name, frames_output]
        self._hop = hop_length
        self._batch_max = max(1, batch_max)
        self._nice = nice
        self._speakers = any(i.name == "sid" for i in session.get_inputs())
        self._lock = threading.Condition()
        self._queued: list[_Row] = []
        self._closed = False
        self.calls = self.rows = 0  # calls made and rows they synthesized
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, ids: list[int], scales: tuple[float, float, float], speaker: int | None = None) -> np.ndarray:
        """The audio of one sentence's phoneme ids (float, unnormalized), from the next call."""
        row = _Row(list(ids), scales, speaker)
        with self._lock:
            if self._closed:
                raise EngineError("tts", "the batched voice is closed", recoverable=False)
            self._queued.append(row)
            self._lock.notify()
        return row.future.result()

    def close(self) -> None:
        """Stop the thread; sentences still queued fail (the process is ending)."""
        with self._lock:
            self._closed = True
            dropped, self._queued = self._queued, []
            self._lock.notify()
        for row in dropped:
            row.future.set_exception(EngineError("tts", "the batched voice closed", recoverable=False))
        self._thread.join(timeout=5.0)

    def _serve(self) -> None:
        name_native_thread(threading.current_thread().name)
        if self._nice > 0:
            lower_thread_priority(self._nice)
        while (batch := self._gather()) is not None:
            try:
                audios = self._call(batch)
            except Exception as exc:  # noqa: BLE001 - the waiting threads get it, the batcher goes on
                log.error("TTS batch of %d sentences failed: %s", len(batch), type(exc).__name__)
                for row in batch:
                    row.future.set_exception(exc)
            else:
                for row, audio in zip(batch, audios):
                    row.future.set_result(audio)

    def _gather(self) -> list[_Row] | None:
        """Every sentence queued (up to `batch_max`) with the first one's scales, in order."""
        with self._lock:
            while not self._queued and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            scales = self._queued[0].scales
            batch = [row for row in self._queued if row.scales == scales][: self._batch_max]
            taken = set(map(id, batch))
            self._queued = [row for row in self._queued if id(row) not in taken]
            return batch

    def _call(self, batch: list[_Row]) -> list[np.ndarray]:
        lengths = np.array([len(row.ids) for row in batch], dtype=np.int64)
        ids = np.zeros((len(batch), int(lengths.max())), dtype=np.int64)
        for i, row in enumerate(batch):
            ids[i, : len(row.ids)] = row.ids
        feeds = {"input": ids, "input_lengths": lengths, "scales": np.array(batch[0].scales, dtype=np.float32)}
        if self._speakers:
            feeds["sid"] = np.array([row.speaker or 0 for row in batch], dtype=np.int64)
        audio, frames = self._session.run(self._outputs, feeds)
        self.calls += 1
        self.rows += len(batch)
        audio = audio.reshape(len(batch), -1)
        return [audio[i, : int(frames[i]) * self._hop].copy() for i in range(len(batch))]


class BatchedVoice:
    """A PiperVoice (its phonemizer, ids and config) whose model calls go through a PiperBatcher."""

    def __init__(self, voice: Any, batcher: PiperBatcher) -> None:
        self.voice = voice
        self.config = voice.config
        self.batcher = batcher

    def synthesize(self, text: str, syn_config: Any) -> Iterator[Any]:
        """As PiperVoice.synthesize: one chunk per sentence, normalized as piper normalizes it."""
        from piper import AudioChunk

        config = self.config
        scales, speaker = synthesis_scales(config, syn_config)
        for phonemes in self.voice.phonemize(text):
            if not phonemes:
                continue
            ids = self.voice.phonemes_to_ids(phonemes)
            audio = self.batcher.run(ids, scales, speaker)
            yield AudioChunk(sample_rate=config.sample_rate, sample_width=2, sample_channels=1,
                             audio_float_array=_as_piper_does(audio, syn_config), phonemes=phonemes,
                             phoneme_ids=ids)


def synthesis_scales(config: Any, syn_config: Any) -> tuple[tuple[float, float, float], int | None]:
    """The model's (noise, length, noise_w) scales and speaker id for a synthesis, as
    PiperVoice.phoneme_ids_to_audio picks them: the synthesis's own, else the voice's."""
    scales = (_or(syn_config.noise_scale, config.noise_scale), _or(syn_config.length_scale, config.length_scale),
              _or(syn_config.noise_w_scale, config.noise_w_scale))
    speaker = _or(syn_config.speaker_id, config.default_speaker_id) if config.num_speakers > 1 else None
    return scales, speaker


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _as_piper_does(audio: np.ndarray, syn_config: Any) -> np.ndarray:
    """PiperVoice.synthesize's finishing: scaled to full range, volume, clipped, float32."""
    if syn_config.normalize_audio:
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        audio = np.zeros_like(audio) if peak < 1e-8 else audio / peak
    if syn_config.volume != 1.0:
        audio = audio * syn_config.volume
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
