"""One settings object: defaults, then a TOML file, then VP_* environment variables."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from voice_pipeline.errors import ConfigError

ENV_PREFIX = "VP_"


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    max_sessions: int = 8  # the hard ceiling per worker; below it, admission follows admit_p90_ms
    # Admission from measured capacity (app/capacity.py): new sessions are refused (server_busy,
    # /ready "full") while the recent turns' p90 from the end of a turn to the first reply audio is
    # above this; 0 -> half of budgets.first_audio_ms (1250 ms by default); negative: count only.
    admit_p90_ms: int = 0
    # ... and while the worker's event loop runs later than this at p90 over 10 s (app/loop_lag.py);
    # 0 or negative: not looked at.
    admit_loop_lag_ms: int = 250
    max_text_frame_bytes: int = 64 * 1024
    start_timeout_s: float = 10.0  # a /v1/realtime socket without session.start by then is closed
    audio_in_queue_frames: int = 200  # ~4 s of 20 ms frames; oldest dropped beyond
    log_level: str = "INFO"
    log_transcripts: bool = False  # privacy: what users said/heard is never logged unless set
    # Security (docs/security.md). Secrets are kept out of repr() so they never reach a log.
    auth_token: str = field(default="", repr=False)  # bearer token; required beyond loopback
    insecure_no_auth: bool = False  # explicit opt-in: listen beyond loopback with no token
    allowed_origins: str = ""  # extra browser origins (comma-separated) besides the page's own
    session_token_ttl_s: int = 60  # life of the page's signed token for one /v1/realtime upgrade
    public_url: str = ""  # e.g. wss://voice.example.com: the URL prefix providers sign (behind a proxy)
    twilio_auth_token: str = field(default="", repr=False)  # verifies X-Twilio-Signature on /v1/twilio
    telnyx_public_key: str = ""  # base64 ed25519 key: verifies Telnyx's signature on /v1/telnyx
    telnyx_max_age_s: int = 300  # Telnyx timestamps further from now than this are refused
    supervise: bool = True  # `serve` runs the server in a worker process, started again if it crashes
    drain_timeout_s: float = 20.0  # on SIGTERM: the longest wait for turns and replies in progress
    workers: int = 1  # worker processes sharing the port; 0 -> from the core count
    # With several workers, who picks each new connection's worker: "kernel" (SO_REUSEPORT: a hash of
    # the connection's addresses, so at random; a worker at its limit refuses while another has room)
    # or "sessions" (the supervisor: the ready worker with the fewest sessions, app/dispatch.py;
    # measured slower, as each worker batches its own sessions' VAD and STT: docs/scaling.md).
    balance: str = "kernel"


@dataclass
class VadSettings:
    threshold: float = 0.5
    min_speech_ms: int = 64  # speech shorter than this is not a turn (clicks, breaths)
    endpoint_silence_ms: int = 300  # silence after speech that ends the user's turn
    barge_in_min_speech_ms: int = 96  # speech over the assistant that pauses it (or interrupts it, below)
    # Speech over the assistant (docs/turn-taking.md): its audio pauses, the words are judged at the
    # speaker's pause; a backchannel ("mhm", "okay") resumes it, other words or this much speech
    # interrupt it. 0: any speech interrupts at once (the older rule; also when STT is off).
    barge_in_confirm_ms: int = 700
    echo_gate: bool = True  # input that correlates with the reply just played is echo, not speech
    echo_threshold: float = 0.5  # normalized correlation at or above which a window is echo
    prefix_padding_ms: int = 300  # audio kept before the detected start of speech
    # Silero for all sessions in shared batched calls (engines/vad_batch.py); false: one call per
    # session on the shared VAD thread. batch_wait_ms: the longest a window waits for the other
    # sessions' (32: one call per 32 ms tick for all of them, ~15 ms later at p50); 0: batch what
    # queued while the VAD thread was busy, no wait (docs/scaling.md, "The VAD of many sessions").
    batch: bool = True
    batch_wait_ms: int = 0
    # Where the batched Silero and Smart Turn run (engines/onnx_device.py): cpu | cuda | auto (CUDA
    # when the installed onnxruntime has it). The CPU by default: on the H100 machine the batched
    # Silero on CUDA took 117 ms per call at p50 for 64 sessions against 0.75 ms on the CPU, and 7x
    # the CPU time (docs/scaling.md, "The VAD of many sessions").
    device: str = "cpu"
    # Both need the final transcript within the endpoint window. "auto": on when the STT runs on
    # CUDA or its start-up pass over 2 s took at most half the endpoint window (engines/loader.py);
    # "on"/"off" (or true/false) force it. The end-of-turn probability is off by default: on the
    # 2-core CPU with the fitted window it cost 80-240 ms at p50 for fewer false cut-offs on
    # mid-sentence pauses (docs/benchmarks.md); "auto" or "on" turns it on.
    speculate: str = "auto"  # prepare the reply during the endpoint wait, held back until the turn ends
    # The older switch for the text signal, kept for scripts: "on" = end_of_turn "text", "off" = "silence"
    # (when end_of_turn is "auto"); "auto" leaves the choice to end_of_turn.
    semantic_eot: str = "auto"
    # End of turn (docs/turn-taking.md): "audio" (Smart Turn on the pause's audio), "audio+text" (and
    # the words must read as finished), "text" (the words only), "silence" (silence alone), "auto".
    end_of_turn: str = "auto"
    eot_sure: float = 0.5  # audio score at or above: the turn is complete (with audio+text: and the words are)
    eot_unsure: float = 0.1  # audio score below: the user is mid-sentence, whatever the words say
    eot_text_sure: float = 0.8  # audio+text: the words' score needed as well
    eot_sure_silence_ms: int = 160  # audio alone: silence that ends a complete turn (may be under endpoint_silence_ms)
    eot_agree_silence_ms: int = 400  # audio+text: silence that ends a turn both call complete (guards list and digit gaps)
    eot_wait_silence_ms: int = 1800  # silence that ends an incomplete one (longer than mid-sentence pauses)
    eot_budget_ms: int = 500  # a model slower than this is not waited for: the silence rule decides


@dataclass
class SttSettings:
    model: str = "tiny.en"  # "tiny.en" (embedded), "base" (the stt-base extra) or a CTranslate2 model dir
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"  # auto -> int8 on CPU, float16 on CUDA
    cpu_threads: int = 0  # 0 -> all cores
    beam_size: int = 1
    partials: bool = True
    partial_interval_ms: int = 700
    early_final: bool = True  # start the final pass at the start of silence, not at the endpoint
    # "fitted": whisper's encoder runs on the utterance plus `window_margin_s` of silence instead of
    # a fixed 30 s window (engines/whisper_window.py); "full": faster-whisper's own 30 s windows.
    encoder_window: str = "fitted"
    window_margin_s: float = 2.0
    # The passes of all sessions that are due when the model frees up run as one batched call,
    # finals first (engines/stt_batch.py; fitted window only). "auto": on, with CUDA and on the CPU
    # (where it measured faster too: docs/scaling.md); "on"/"off" force it.
    batch: str = "auto"
    batch_max: int = 8  # passes per call; with CUDA more due than this shed partials, on the CPU any wait does


def default_llm_instances() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


@dataclass
class LlmSettings:
    model_path: str = ""  # empty -> the embedded SmolLM2-135M-Instruct GGUF
    # "tuned": SmolLM2-135M-Instruct plus the project's voice LoRA (models/voice_lora/), which
    # answers in its first clause, briefly and without markdown (docs/finetune.md); "base": as shipped.
    variant: str = "tuned"
    lora_path: str = ""  # an explicit adapter overrides `variant`
    n_ctx: int = 2048
    n_threads: int = 0  # per context (or child server); 0 -> the cores shared out among `instances`, at least 1
    n_gpu_layers: int = -1  # used only when llama.cpp was built with GPU support
    max_tokens: int = 96
    temperature: float = 0.3
    history_turns: int = 8
    # llama.cpp contexts (or child servers): replies generating at the same time. Default: two per
    # core, 2 to 8, each on cores/instances threads (2 cores: 4 x 1 thread; docs/scaling.md, measured
    # better at 6 sessions than 2 x 2 threads and the same for one).
    instances: int = field(default_factory=default_llm_instances)
    # "in_process": llama.cpp contexts in each worker; "child": llama.cpp servers in child processes
    # started by `serve` (a native crash restarts one server, not every session); "url": any
    # OpenAI-compatible endpoint(s) in `url` (vLLM, SGLang, llama-server); "server": ONE llama.cpp
    # `llama-server` child with `server_slots` parallel slots (continuous batching). docs/scaling.md
    serving: str = "in_process"
    server_slots: int = 0  # serving = "server": parallel slots (sessions generating at once); 0 -> instances
    server_bin: str = ""  # serving = "server": the llama-server binary; empty -> scripts/build-llama-server.sh's
    # serving = "server": its nice value. Above 0 the pipeline's own work (VAD, STT, TTS) runs before
    # the LLM's generation when every core is busy; but anything else on the machine does too (measured
    # both ways on 2 shared cores, docs/scaling.md), so 0 by default.
    server_nice: int = 0
    # serving = "server": one KV cache shared by every slot (llama-server --kv-unified) instead of one
    # per slot. Measured on an H200 at 64 replies at once: a token every 28 ms instead of 74 (its
    # main loop, the busiest thread, also spent less CPU), at 16 every 10 instead of 20.
    server_kv_unified: bool = True
    # serving = "server": llama-server's host-memory prompt cache (--cache-ram, MiB); 0 turns it off.
    # Each slot keeps its own prompt in the KV cache either way. On by default in llama-server, it
    # held the first token of 64 replies at once to 1,031 ms at p50 (16: 301) against 97 (16: 44) off.
    server_cache_ram_mib: int = 0
    # serving = "server": the voice LoRA merged into the model's weights (llama-export-lora, cached)
    # instead of applied at run time, where it adds about as many GPU kernels per step as the model
    # has. "auto": when llama-server sees a GPU and `n_gpu_layers` is not 0 (on the CPU the 4-bit
    # model plus the adapter reads far less memory per token than the merged F16 one);
    # engines/lora_merge.py.
    server_merge_lora: str = "auto"
    url: str = ""  # serving = "url": comma-separated base URLs, e.g. http://10.0.0.5:8000/v1
    served_model: str = ""  # serving = "url": the model name the endpoint serves ("local" if empty)
    system_prompt_file: str = ""  # empty -> models/prompts/system.txt
    # serving = "in_process": a reply's tokens after its first speakable piece come from threads at
    # this lower CPU priority (nice) while enough of its audio is left to play (tts.later_lead_ms),
    # so another session's first piece is not held back by them (docs/scaling.md); 0: one priority.
    later_nice: int = 10

    def threads_per_instance(self) -> int:
        """`n_threads`, or the cores shared out among the `instances` (at least one thread each)."""
        return self.n_threads or max(1, (os.cpu_count() or 1) // max(1, self.instances))


@dataclass
class TtsSettings:
    voice: str = "en_US-joe-medium"
    # cpu | cuda | auto (CUDA when onnxruntime has it). The CPU by default, with a GPU too: on the
    # H200 machine Piper on onnxruntime's CUDA provider was slower at every load (one sentence 323
    # against 50 ms; 64 sessions p95 1,413 against 703 ms; docs/scaling.md).
    device: str = "cpu"
    # Where the later pieces' lane runs (auto | cpu | cuda; empty: as `device`): e.g. a reply's first
    # piece on the cores, where one sentence is quickest, and the rest batched on the GPU.
    later_device: str = ""
    length_scale: float = 1.0
    output_sample_rate: int = 22_050
    first_piece_min_words: int = 3
    # A first sentence still running at this many words is cut before a phrase-starting word (and,
    # in, because...) and spoken with a clause's pause (reply/chunker.py); 0: only at a clause end.
    first_piece_max_words: int = 8
    piece_min_words: int = 8
    stream_text: bool = True  # false: wait for the whole LLM reply before synthesizing (a benchmark baseline)
    pacing_lead_ms: int = 200
    frame_ms: int = 40
    # Syntheses at once in each lane (one voice; piper locks its espeak calls itself; a reply's first
    # piece goes ahead of others' later pieces). Default: one per four cores, at least 2: on 2 cores
    # at 6 sessions a first piece otherwise waits behind another reply's piece that its playback is
    # about to need (docs/scaling.md, measured 2026-11-28).
    workers: int = field(default_factory=lambda: max(2, (os.cpu_count() or 1) // 4))
    # The sentences of all syntheses in a lane that are due when its model call frees up run as one
    # call of up to `batch_max` rows (engines/piper_batch.py). "auto": with CUDA only, where a call
    # costs about the same for one row as for many; then each lane has `batch_max` threads.
    batch: str = "auto"
    batch_max: int = 16
    # onnxruntime threads of the voice's session, shared by those syntheses; 0: the cores shared
    # out among the server's worker processes (onnxruntime alone would take every core in each).
    threads: int = 0
    # Later pieces are synthesized by their own `workers` threads at this lower CPU priority (nice),
    # so a first piece never waits for them (engines/piper.py); 0: one pool for every piece.
    later_nice: int = 10
    # A reply's work after its first piece (its later pieces, and with llm.later_nice its tokens)
    # runs at the lower priority only while more than this much of its audio is left to play;
    # below it, at full priority, so a busy CPU does not leave a gap in the reply (reply/pace.py).
    later_lead_ms: int = 1500
    # A reply's first pieces come out of Piper a window at a time, the first window about this many
    # ms of audio, so its first audio does not wait for the whole sentence (engines/piper_stream.py;
    # CPU lanes without batching); 0: whole sentences, as piper makes them.
    stream_first_ms: int = 500


@dataclass
class TelephonySettings:
    """Phone calls: media-stream WebSockets (/v1/twilio, /v1/telnyx) and the SIP user agent."""

    sip_enabled: bool = True  # loopback only by default: a local PBX or phone can call with no setup
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060  # 0 -> any free port (tests); a port in use is logged and SIP stays off
    sip_advertised_host: str = ""  # address in Contact/SDP; needed when sip_host is 0.0.0.0
    transfer_uri: str = ""  # SIP REFER target on escalation (e.g. sip:human@pbx); empty: no transfer
    transfer_digit: str = "0"  # a DTMF key that asks for a person; empty: none
    mark_interval_ms: int = 200  # media streams: a mark after about this much reply audio
    start_timeout_s: float = 10.0  # media streams: a socket with no `start` by then is closed (1008)
    max_pending_streams: int = 16  # media streams: sockets still waiting for `start`; more are refused (1013)
    sip_allowed_peers: str = ""  # SIP: comma-separated IPs/CIDRs answered besides loopback; others get 403


@dataclass
class RemoteSettings:
    """The `large` route: any OpenAI-compatible streaming chat endpoint (empty url: none)."""

    url: str = ""  # e.g. http://127.0.0.1:8080/v1
    model: str = ""
    api_key: str = ""
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 120.0
    max_tokens: int = 512
    temperature: float = 0.3
    first_token_ms: int = 1500  # budget before the cascade falls back to the local model
    stall_ms: int = 3000  # longest pause between tokens once the reply has started
    breaker_failures: int = 3
    breaker_cool_down_s: float = 30.0
    filler: bool = True  # speak a short cached filler while the remote model gets going


@dataclass
class RoutingSettings:
    enabled: bool = True  # off: every turn goes to the local small model
    weights_path: str = ""  # empty -> models/router/weights-v1.npz


@dataclass
class BudgetSettings:
    """Per-stage latency budgets (ms); a stage that misses its budget hands over to the next level."""

    stt_final_ms: int = 4000  # from the endpoint to the final transcript
    llm_first_token_ms: int = 4000  # local small model, from the request
    first_audio_ms: int = 2500  # from the start of a reply: past it, a cached filler plays meanwhile
    escalate_after_failures: int = 2  # consecutive "sorry" answers before an escalation event


@dataclass
class CapabilitySettings:
    """Off-states are product states: STT off asks for text, LLM off answers from templates only,
    TTS off gives text-only replies."""

    stt: bool = True
    llm: bool = True
    tts: bool = True


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    telephony: TelephonySettings = field(default_factory=TelephonySettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    capabilities: CapabilitySettings = field(default_factory=CapabilitySettings)

    @classmethod
    def load(cls, path: str | Path | None = None, environ: typing.Mapping[str, str] | None = None) -> "Settings":
        settings = cls()
        if path:
            with open(path, "rb") as handle:
                apply_mapping(settings, tomllib.load(handle), source=str(path))
        apply_env(settings, os.environ if environ is None else environ)
        return settings


def apply_mapping(settings: Settings, data: typing.Mapping, source: str) -> None:
    for section_name, values in data.items():
        section = _section(settings, section_name, source)
        if not isinstance(values, typing.Mapping):
            raise ConfigError(f"{source}: [{section_name}] must be a table")
        for key, value in values.items():
            _set(section, key, value, f"{source}: {section_name}.{key}")


def apply_env(settings: Settings, environ: typing.Mapping[str, str]) -> None:
    """VP_<SECTION>_<FIELD>=value, e.g. VP_VAD_ENDPOINT_SILENCE_MS=250."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        section_name, _, key = name[len(ENV_PREFIX):].lower().partition("_")
        section = _section(settings, section_name, name)
        _set(section, key, raw, name)


def _section(settings: Settings, name: str, source: str):
    if name not in {f.name for f in dataclasses.fields(settings)}:
        raise ConfigError(f"{source}: unknown settings section {name!r}")
    return getattr(settings, name)


def _set(section, key: str, value, source: str) -> None:
    types = typing.get_type_hints(type(section))
    if key not in types:
        raise ConfigError(f"{source}: unknown setting {key!r}")
    setattr(section, key, coerce(value, types[key], source))


def switch_on(value: str | bool, auto: bool) -> bool:
    """An "auto"/"on"/"off" setting: "auto" takes the value the caller measured (`auto`)."""
    text = str(value).lower()
    if text == "auto":
        return auto
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"expected auto, on or off, not {value!r}")


def coerce(value, target: type, source: str):
    try:
        if target is bool:
            if isinstance(value, str):
                if value.lower() in {"1", "true", "yes", "on"}:
                    return True
                if value.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        return target(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: cannot read {value!r} as {target.__name__}") from exc
