"""Piper's audio a window at a time: the voice's graph cut into its three stages.

Piper's model (VITS) makes a sentence's audio in one call: the text encoder and the durations (per
phoneme), then the flow and the HiFi-GAN decoder (per audio frame of `hop_length` samples). Through
piper-tts a sentence's first sample comes when its whole synthesis has returned, though the flow
and the decoder, three quarters of the time, are convolutional: each of their output frames
depends only on a few input frames either side of it (joe-medium: the flow 32, the decoder 11).

`split_piper_model` cuts the graph before the flow and before the decoder. `StreamingVoice` runs the
front once per sentence, then the flow and the decoder over a short first window of frames (with
the context they need computed and dropped), yields that audio, then the rest in longer windows.
Each window's audio equals the same frames of the whole call (within float rounding; the test
compares them). On 2 cores, 40 first pieces of real replies: first audio p50 74 ms instead of 155,
for 16 % more CPU (the first window's flow and each window's context are computed twice).

Loudness: piper scales each sentence to full range by its own peak, which a sentence still being
made does not know; here every sentence of a voice gets the same gain, from the peaks of a few
calibration sentences (`VoiceProfile`). Over 20 replies of joe-medium the raw peaks spread 0.27-0.69
while their loudness (RMS) spread 0.05-0.09, so one gain keeps the sentences' loudness even where
the peak scaling made a quiet-peaked sentence up to 2.5 times louder than its neighbour.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voice_pipeline.engines import onnx_wire as wire
from voice_pipeline.engines.piper_batch import synthesis_scales
from voice_pipeline.errors import EngineError

log = logging.getLogger("voice_pipeline.engines.piper_stream")

DECODER_CONV = "/dec/conv_pre/Conv"  # the HiFi-GAN decoder's first operator, as piper's export names it
FLOW_SCOPE = "/flow/"
_PROFILE_VERSION = 1  # bump when the calibration below changes: cached profiles are then remade
# Calibration sentences: varied openings and lengths, as replies start (the last is the longest,
# long enough to see each stage's context on real frames)
CALIBRATION = ("Sure.", "Yes, I can help with that.", "Good morning! How can I help?",
               "Two plus two is four.", "Sorry, could you say that again?",
               "The capital of France is Paris, a city known for its art, its food and its museums.")
HEADROOM = 0.95  # the loudest calibration sentence peaks here


@dataclass(frozen=True)
class VoiceGraphs:
    """The voice's model as three ONNX models: front (phoneme ids -> the flow's inputs), flow (-> the
    decoder's input, `latent`) and decoder (-> audio); each takes the original graph inputs it needs
    (the speaker id, if any) besides its cut tensors."""

    front: bytes
    flow: bytes
    decoder: bytes
    flow_inputs: tuple[str, ...]  # [batch, channels, frames] each (the prior's frames and their mask)
    latent: str


def split_piper_model(path: str | Path) -> VoiceGraphs:
    """Cut a Piper VITS export before its flow and its decoder; ValueError for another graph."""
    model = wire.fields(Path(path).read_bytes())
    graphs = [wire.message(value) for number, _, value in model if number == wire.MODEL_GRAPH]
    if len(graphs) != 1:
        raise ValueError("no graph in the model")
    graph = graphs[0]
    raw_nodes = [wire.as_bytes(value) for number, _, value in graph if number == wire.GRAPH_NODE]
    nodes = [wire.fields(raw) for raw in raw_nodes]
    if any(wire.string(node, wire.NODE_OP_TYPE) in ("If", "Loop", "Scan") for node in nodes):
        raise ValueError("the graph has subgraphs")
    producer = {out: i for i, node in enumerate(nodes) for out in wire.strings(node, wire.NODE_OUTPUT)}
    inputs = [wire.string(wire.message(v), wire.VALUE_INFO_NAME) for n, _, v in graph if n == wire.GRAPH_INPUT]
    outputs = [wire.message(v) for n, _, v in graph if n == wire.GRAPH_OUTPUT]
    decoder_convs = [node for node in nodes if wire.string(node, wire.NODE_NAME) == DECODER_CONV]
    if len(decoder_convs) != 1 or len(outputs) < 1:
        raise ValueError(f"no {DECODER_CONV} in the graph (not a Piper VITS export with named scopes?)")
    latent = wire.strings(decoder_convs[0], wire.NODE_INPUT)[0]
    output = wire.string(outputs[0], wire.VALUE_INFO_NAME) or ""

    def ancestors(targets: list[str], stop: set[str]) -> tuple[set[str], set[int]]:
        tensors: set[str] = set()
        kept: set[int] = set()
        stack = list(targets)
        while stack:
            tensor = stack.pop()
            if tensor in tensors or tensor in stop:
                continue
            tensors.add(tensor)
            if tensor in producer:
                kept.add(producer[tensor])
                stack.extend(t for t in wire.strings(nodes[producer[tensor]], wire.NODE_INPUT) if t)
        return tensors, kept

    # The flow's inputs: what the flow's nodes (its scope, and the nodes computed from them on the
    # way to the latent) take from before it that depends on the graph's inputs: the prior's frames
    # and their mask; not its weights or the constants the exporter shared between scopes.
    on_path = ancestors([latent], set())[1]
    region: set[str] = set()
    region_nodes: list[int] = []
    for i in sorted(on_path):  # an ONNX graph's nodes are in topological order
        node_inputs = wire.strings(nodes[i], wire.NODE_INPUT)
        if (wire.string(nodes[i], wire.NODE_NAME) or "").startswith(FLOW_SCOPE) or region & set(node_inputs):
            region_nodes.append(i)
            region.update(wire.strings(nodes[i], wire.NODE_OUTPUT))
    dynamic = set(inputs)  # tensors computed from the graph's inputs (not constants)
    for node in nodes:
        if dynamic & set(wire.strings(node, wire.NODE_INPUT)):
            dynamic.update(wire.strings(node, wire.NODE_OUTPUT))
    taken = {t for i in region_nodes for t in wire.strings(nodes[i], wire.NODE_INPUT) if t} - region
    flow_inputs = sorted(taken & dynamic - set(inputs))
    if not region_nodes or not flow_inputs:
        raise ValueError("no flow scope in the graph")
    parts = [_subgraph(model, graph, raw_nodes, ancestors, [*flow_inputs], set(), []),
             _subgraph(model, graph, raw_nodes, ancestors, [latent], set(flow_inputs), flow_inputs),
             _subgraph(model, graph, raw_nodes, ancestors, [output], {latent}, [latent])]
    for name, part in zip(("flow", "decoder"), parts[1:]):
        if b"RandomNormal" in part[1] or any(i in part[2] for i in ("input", "input_lengths", "scales")):
            raise ValueError(f"the {name} part is not a function of its frames alone")
    return VoiceGraphs(parts[0][0], parts[1][0], parts[2][0], tuple(flow_inputs), latent)


def _subgraph(model: list[wire.Field], graph: list[wire.Field], raw_nodes: list[bytes], ancestors: Any,
              outputs: list[str], stop: set[str], new_inputs: list[str]) -> tuple[bytes, bytes, set[str]]:
    """(model bytes, its node bytes, the original graph inputs it keeps) computing `outputs` from
    `new_inputs` (float tensors) and the original inputs it needs, with only the nodes and weights
    that takes."""
    tensors, kept = ancestors(outputs, stop)
    node_bytes = b"".join(raw_nodes[i] for i in sorted(kept))
    kept_inputs: set[str] = set()
    fields: list[wire.Field] = [(wire.GRAPH_NODE, wire.LENGTH_DELIMITED, raw_nodes[i]) for i in sorted(kept)]
    for number, wire_type, value in graph:
        if number in (wire.GRAPH_NODE, wire.GRAPH_OUTPUT, wire.GRAPH_VALUE_INFO):
            continue
        if number == wire.GRAPH_INITIALIZER and wire.string(wire.message(value), wire.TENSOR_NAME) not in tensors:
            continue
        if number == wire.GRAPH_INPUT:
            name = wire.string(wire.message(value), wire.VALUE_INFO_NAME) or ""
            if name not in tensors:
                continue
            kept_inputs.add(name)
        fields.append((number, wire_type, value))
    fields += [(wire.GRAPH_INPUT, wire.LENGTH_DELIMITED, _float_tensor(name)) for name in new_inputs]
    fields += [(wire.GRAPH_OUTPUT, wire.LENGTH_DELIMITED, _float_tensor(name)) for name in outputs]
    edited = wire.encode(wire.edit(model, wire.MODEL_GRAPH, lambda _: wire.encode(fields)))
    return edited, node_bytes, kept_inputs


def _float_tensor(name: str) -> bytes:
    """A ValueInfo: a float tensor of unknown shape."""
    tensor = wire.encode([(wire.TENSOR_ELEM_TYPE, wire.VARINT, wire.FLOAT)])
    value_type = wire.encode([(wire.TYPE_TENSOR, wire.LENGTH_DELIMITED, tensor)])
    return wire.encode([(wire.VALUE_INFO_NAME, wire.LENGTH_DELIMITED, name.encode()),
                        (wire.VALUE_INFO_TYPE, wire.LENGTH_DELIMITED, value_type)])


@dataclass(frozen=True)
class VoiceProfile:
    """What streaming needs to know of a voice, measured on it: the frames of context either side of
    a flow and of a decoder output frame, and the one gain for every sentence."""

    flow_context: int
    decoder_context: int
    gain: float


class StreamingVoice:
    """A PiperVoice's `synthesize` whose sentences come a window of frames at a time. The lane's
    synthesis threads share it: its sessions may run from several threads and nothing else in it
    changes after loading (piper locks its espeak calls itself)."""

    def __init__(self, voice: Any, sessions: tuple[Any, Any, Any], graphs: VoiceGraphs, first_frames: int,
                 profile_cache: Path | None = None, model_path: str | Path | None = None) -> None:
        """`voice`: the PiperVoice (phonemizer, ids, config); `sessions`: onnxruntime sessions of
        `graphs`' front, flow and decoder. The profile is measured here, or read from `profile_cache`
        (a directory) where an earlier start measured this model file."""
        self.voice = voice
        self.config = voice.config
        self.sessions = sessions
        self._graphs = graphs
        self._hop = int(voice.config.hop_length)
        self.first_frames = max(4, first_frames)
        self._speaker_inputs = [{i.name for i in s.get_inputs()} & {"sid"} for s in sessions]
        self.profile = _cached_profile(self, profile_cache, model_path)

    def synthesize(self, text: str, syn_config: Any, windows: bool = True) -> Iterator[Any]:
        """As PiperVoice.synthesize, but each sentence in windows: one AudioChunk per window (or,
        `windows` false, per sentence: the three stages once each, as whole as piper's call)."""
        from piper import AudioChunk

        gain = (self.profile.gain if syn_config.normalize_audio else 1.0) * syn_config.volume
        for phonemes in self.voice.phonemize(text):
            if not phonemes:
                continue
            ids = self.voice.phonemes_to_ids(phonemes)
            for audio in self.windows(ids, syn_config, first_frames=self.first_frames if windows else 0):
                yield AudioChunk(sample_rate=self.config.sample_rate, sample_width=2, sample_channels=1,
                                 audio_float_array=np.clip(audio * gain, -1.0, 1.0).astype(np.float32),
                                 phonemes=phonemes, phoneme_ids=ids)

    def windows(self, ids: list[int], syn_config: Any, first_frames: int | None = None) -> Iterator[np.ndarray]:
        """One sentence's raw audio (as the model makes it), window by window: the first of
        `first_frames` (default the voice's; 0: the whole sentence in one)."""
        scales, speaker = synthesis_scales(self.config, syn_config)
        sid = {"sid": np.array([speaker or 0], dtype=np.int64)}
        prior = self._prior(ids, scales, sid)
        frames = prior[0].shape[-1]
        if any(tensor.ndim != 3 or tensor.shape[-1] != frames for tensor in prior):
            raise EngineError("tts", "the voice's flow inputs are not frames: set tts.stream_first_ms = 0")
        first = self.first_frames if first_frames is None else first_frames
        flow_pad, decoder_pad = self.profile.flow_context, self.profile.decoder_context
        if first and frames > 2 * first:  # the first window from a flow over just the frames it needs
            flow_end = min(frames, first + decoder_pad + flow_pad)
            latent = self._flow_over(prior, 0, flow_end, sid)
            yield self._decode(latent, 0, first, sid)
            start, size = first, 2 * first
        else:
            start, size = 0, frames
        # Each next window twice the last, made while the audio before it plays (at 6 sessions on
        # 2 cores a 300 ms first window and windows growing four-fold stalled one reply in six)
        latent = self._flow_over(prior, 0, frames, sid)
        while start < frames:
            end = frames if frames - (start + size) < size else start + size
            yield self._decode(latent, start, end, sid)
            start, size = end, 2 * size

    def _run(self, part: int, feeds: dict[str, np.ndarray], sid: dict[str, np.ndarray]) -> list[np.ndarray]:
        session = self.sessions[part]
        if self._speaker_inputs[part]:
            feeds = {**feeds, **sid}
        return list(session.run(None, feeds))

    def _prior(self, ids: list[int], scales: tuple[float, ...], sid: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The front: a sentence's phoneme ids to the flow's inputs over all its frames."""
        feeds: dict[str, np.ndarray] = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
                 "scales": np.array(scales, dtype=np.float32)}
        return self._run(0, feeds, sid)

    def _flow_over(self, prior: list[np.ndarray], start: int, end: int, sid: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: np.ascontiguousarray(tensor[..., start:end])
                 for name, tensor in zip(self._graphs.flow_inputs, prior)}
        return self._run(1, feeds, sid)[0]

    def _decode(self, latent: np.ndarray, start: int, end: int, sid: dict[str, np.ndarray]) -> np.ndarray:
        """The audio of frames [start, end), decoded with the context either side that they depend on."""
        pad = self.profile.decoder_context
        low, high = max(0, start - pad), min(latent.shape[-1], end + pad)
        feeds = {self._graphs.latent: np.ascontiguousarray(latent[..., low:high])}
        audio = self._run(2, feeds, sid)[0].reshape(-1)
        return audio[(start - low) * self._hop:(end - low) * self._hop]

    def measure_profile(self) -> VoiceProfile:
        """Each stage's context, from changing one frame in the middle of a real sentence and seeing
        which output frames move; the gain from the calibration sentences' peaks (noise off)."""
        from piper import SynthesisConfig

        quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        scales, speaker = synthesis_scales(self.config, quiet)
        sid = {"sid": np.array([speaker or 0], dtype=np.int64)}
        peaks, prior = [], None
        for sentence in CALIBRATION:
            for phonemes in self.voice.phonemize(sentence):
                ids = self.voice.phonemes_to_ids(phonemes)
                prior = self._prior(ids, scales, sid)
                latent = self._flow_over(prior, 0, prior[0].shape[-1], sid)
                audio = self._run(2, {self._graphs.latent: latent}, sid)[0]
                peaks.append(float(np.abs(audio).max()))
        assert prior is not None
        frames, middle = prior[0].shape[-1], prior[0].shape[-1] // 2
        moved = list(prior)
        moved[0] = prior[0].copy()
        moved[0][..., middle] += 1.0
        latent = self._flow_over(prior, 0, frames, sid)
        flow_context = _reach(latent, self._flow_over(moved, 0, frames, sid), middle, axis=-1)
        shifted = latent.copy()
        shifted[..., middle] += 1.0
        before, after = (self._run(2, {self._graphs.latent: z}, sid)[0].reshape(1, -1, self._hop)
                         for z in (latent, shifted))
        decoder_context = _reach(before, after, middle, axis=1)
        return VoiceProfile(flow_context, decoder_context, HEADROOM / max(max(peaks), 1e-3))


class FixedGainVoice:
    """A voice (PiperVoice, BatchedVoice) whose sentences all get one gain, a StreamingVoice's, instead
    of each its own peak's: a reply's later pieces, synthesized whole, as loud as its streamed first."""

    def __init__(self, voice: Any, gain: float) -> None:
        self.voice, self.gain = voice, gain
        self.config = voice.config

    def synthesize(self, text: str, syn_config: Any) -> Iterator[Any]:
        gain = (self.gain if syn_config.normalize_audio else 1.0) * syn_config.volume
        for chunk in self.voice.synthesize(text, replace(syn_config, normalize_audio=False, volume=1.0)):
            audio = np.clip(chunk.audio_float_array * gain, -1.0, 1.0).astype(np.float32)
            yield replace(chunk, audio_float_array=audio)


def _reach(before: np.ndarray, after: np.ndarray, middle: int, axis: int) -> int:
    """How many frames either side of `middle` changed between `before` and `after` (frames along
    `axis`: the last for a latent [1, channels, frames], 1 for audio shaped [1, frames, hop])."""
    difference = np.moveaxis(np.abs(after - before), axis, 0)
    frames = difference.shape[0]
    changed = np.nonzero(difference.reshape(frames, -1).max(axis=1) > 0)[0]
    if not len(changed):
        return 1
    reach = int(max(middle - changed.min(), changed.max() - middle)) + 1
    if changed.min() == 0 or changed.max() == frames - 1:
        raise ValueError(f"a stage's context ({reach} frames or more) is too wide to stream")
    return reach


def _cached_profile(voice: StreamingVoice, cache: Path | None, model_path: str | Path | None) -> VoiceProfile:
    """The voice's profile from `cache` if this model file was measured before, else measured (and
    written there)."""
    file = None
    if cache is not None and model_path is not None:
        stat = Path(model_path).stat()
        file = cache / f"{Path(model_path).stem}-{stat.st_size}-{int(stat.st_mtime)}-v{_PROFILE_VERSION}.json"
        try:
            return VoiceProfile(**json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            pass
    profile = voice.measure_profile()
    log.info("Piper voice profile measured: flow context %d, decoder context %d frames, gain %.2f",
             profile.flow_context, profile.decoder_context, profile.gain)
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            temporary = file.with_suffix(f".{os.getpid()}.tmp")  # worker processes may measure at once
            temporary.write_text(json.dumps(asdict(profile)), encoding="utf-8")
            temporary.replace(file)
        except OSError as exc:
            log.warning("Piper voice profile not cached: %s", exc)
    return profile
