"""Systems under test: what the benchmark plays its corpus to, one small Protocol for all.

A system starts (its cold start is measured), answers spoken items (one item = one new
conversation; several may run at once), and stops. This pipeline is measured through its real
WebSocket server in a subprocess; a baseline is a server with settings changed, or an in-process
pipeline (see naive.py). An external framework becomes a peer by implementing the same Protocol
and registering a factory in `SYSTEMS`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

from voice_pipeline.bench.corpus import SpokenItem


@dataclass
class TurnSample:
    """What one spoken item produced. Times in ms; voice-to-voice measured by the client."""

    system: str
    item_id: str
    concurrency: int
    session_index: int
    reference: str
    engine: str = ""
    noise: str = "none"
    pause_ms: int = 0
    transcript: str = ""
    reply_text: str = ""
    reply_status: str = ""  # response.done's status: "completed" for a whole reply, "cancelled" when cut short
    status: str = "ok"  # ok | stt_fallback | no_audio | no_reply | timeout | error | refused (admission)
    error: str = ""
    turns: int = 0  # turns the server saw in this item (a long pause may split one question)
    premature_endpoints: int = 0  # turns that ended before the user had finished
    spoke_over_user: bool = False  # a false cut-off: reply audio arrived before the user had finished
    speculation: str = ""  # "hit" when the final turn's reply was prepared during the endpoint wait
    speculation_misses: int = 0  # speculative replies thrown away because the user went on
    speculation_wasted_cpu_ms: float = 0.0
    voice_to_voice_ms: float | None = None  # client: last speech sample "spoken" -> first reply audio received
    server_voice_to_voice_ms: float | None = None
    marks_ms: dict = field(default_factory=dict)
    stages_ms: dict = field(default_factory=dict)
    llm_tokens: int | None = None
    llm_tokens_per_s: float | None = None
    tts_real_time_factor: float | None = None  # synthesis time / audio length (in-process systems only)
    first_turn_after_ready: bool = False
    # Full replies: the stalls (ms) a client playing the reply as it arrived would have heard,
    # after its first audio (later pieces or tokens that came too late); None when not measured.
    playback_gaps_ms: list[float] | None = None
    eot: dict = field(default_factory=dict)  # turn.metrics' eot_* fields: the end-of-turn signal's verdict and scores

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def new(cls, system: str, spoken: SpokenItem, concurrency: int, session_index: int) -> "TurnSample":
        item = spoken.item
        return cls(system, item.item_id, concurrency, session_index, item.text, engine=item.engine,
                   noise=item.noise_kind, pause_ms=item.pause_ms)


class SystemUnderTest(Protocol):
    name: str
    description: str
    pid: int | None  # the process whose CPU and memory are measured (None: not measured)

    async def start(self) -> dict:
        """Start and wait until ready; returns cold-start figures in ms."""
        ...

    async def run_item(self, spoken: SpokenItem, concurrency: int, session_index: int) -> TurnSample:
        """Play one item as a new conversation, at real-time pace where the system streams."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SystemSpec:
    name: str
    description: str
    make: Callable[["BenchOptions"], SystemUnderTest]


@dataclass(frozen=True)
class BenchOptions:
    """Knobs every system gets: how many sessions the server must admit, timeouts, logs."""

    max_sessions: int = 16
    turn_timeout_s: float = 60.0
    ready_timeout_s: float = 300.0
    log_dir: str = ""
    extra_env: dict = field(default_factory=dict)
    full_replies: bool = False  # wait for response.done instead of cancelling after the first audio


def _server(name: str, description: str, env: dict[str, str]) -> SystemSpec:
    def make(options: BenchOptions) -> SystemUnderTest:
        from voice_pipeline.bench.server_system import ServerSystem

        return ServerSystem(name, description, {**options.extra_env, **env}, options)

    return SystemSpec(name, description, make)


def _naive(options: BenchOptions) -> SystemUnderTest:
    from voice_pipeline.bench.naive import NaiveSystem

    return NaiveSystem(options)


_NO_CLAUSE_PIECES = {"VP_TTS_FIRST_PIECE_MIN_WORDS": "1000000", "VP_TTS_PIECE_MIN_WORDS": "1000000"}
_ALL_OFF = {"VP_STT_EARLY_FINAL": "false", "VP_STT_PARTIALS": "false", "VP_TTS_STREAM_TEXT": "false",
            "VP_TTS_STREAM_FIRST_MS": "0"}

SYSTEMS: dict[str, SystemSpec] = {
    spec.name: spec
    for spec in (
        _server("pipeline", "this pipeline, every streaming stage on (the default settings)", {}),
        _server("pipeline_base_llm", "this pipeline with SmolLM2 as shipped (no voice LoRA), as the peers' base line",
                {"VP_LLM_VARIANT": "base"}),
        _server("no_early_final", "STT final pass starts at the endpoint, not at the start of silence",
                {"VP_STT_EARLY_FINAL": "false"}),
        _server("no_partials", "no partial transcripts while the user speaks", {"VP_STT_PARTIALS": "false"}),
        _server("partials_often", "a partial transcript every 350 ms of speech (default 700)",
                {"VP_STT_PARTIAL_INTERVAL_MS": "350"}),
        _server("partials_rarely", "a partial transcript every 1400 ms of speech (default 700)",
                {"VP_STT_PARTIAL_INTERVAL_MS": "1400"}),
        _server("full_window", "whisper's encoder on faster-whisper's fixed 30 s window, not fitted to the utterance",
                {"VP_STT_ENCODER_WINDOW": "full"}),
        _server("sentences_only", "TTS gets whole sentences only (no early clause-sized first piece)",
                _NO_CLAUSE_PIECES),
        _server("tts_whole_sentences", "Piper makes a first piece's sentence whole, not in windows "
                                       "(VP_TTS_STREAM_FIRST_MS=0)", {"VP_TTS_STREAM_FIRST_MS": "0"}),
        _server("no_llm_tts_streaming", "TTS starts after the whole LLM answer (VP_TTS_STREAM_TEXT=false)",
                {"VP_TTS_STREAM_TEXT": "false"}),
        _server("streaming_off", "early final, partials, LLM->TTS streaming and TTS windows all off", _ALL_OFF),
        _server("speculation_and_eot", "reply prepared during the endpoint wait, and the endpoint held for the "
                                       "end-of-turn probability (both forced on)",
                {"VP_VAD_SPECULATE": "on", "VP_VAD_SEMANTIC_EOT": "on"}),
        _server("speculation_only", "reply prepared during the endpoint wait; silence alone ends the turn",
                {"VP_VAD_SPECULATE": "on", "VP_VAD_SEMANTIC_EOT": "off"}),
        _server("eot_only", "endpoint moved by the end-of-turn probability; the reply starts after it",
                {"VP_VAD_SPECULATE": "off", "VP_VAD_SEMANTIC_EOT": "on"}),
        _server("silence_only", "neither: 300 ms of silence ends the turn and only then does the reply start",
                {"VP_VAD_SPECULATE": "off", "VP_VAD_SEMANTIC_EOT": "off"}),
        SystemSpec("naive", "naive sequential pipeline in-process: VAD endpoint -> whole transcript -> "
                            "whole LLM answer -> whole TTS -> send", _naive),
    )
}


def register_system(spec: SystemSpec) -> None:
    """The seam for peers: an external framework's adapter registers itself here."""
    SYSTEMS[spec.name] = spec


def server_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment (VP_* settings included) with the system's overrides on top."""
    return {**os.environ, "VP_SERVER_LOG_LEVEL": "WARNING", **extra}


def _register_peers() -> None:
    from voice_pipeline.bench.peers import peer_specs

    for spec in peer_specs():
        register_system(spec)


_register_peers()
