"""Per-turn latency marks, their derived figures, and the Prometheus exports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The critical path of a voice turn, in order. Each stage's share of voice-to-voice is the time
# from the latest earlier mark to its own mark (zero if it finished before the earlier ones).
MARKS = (
    "speech_end",
    "endpoint",
    "stt_final",
    "llm_first_token",
    "first_piece",
    "tts_first_audio",
    "first_audio_sent",
)
STAGES = {
    "endpoint": "endpointing",
    "stt_final": "stt",
    "llm_first_token": "llm_first_token",
    "first_piece": "first_piece",
    "tts_first_audio": "tts",
    "first_audio_sent": "send",
}
EXTRA_MARKS = ("llm_token_20",)  # reported, but not on the critical path

if TYPE_CHECKING:
    from voice_pipeline.engines.fallback import FallbackRecord


@dataclass
class TurnReport:
    """What one turn did besides its timings, for `turn.metrics`: each field set by the stage that
    decided it; a field left at its default is not sent. No user text in here, ever."""

    eot_probability: float | None = None  # the text end-of-turn score at the endpoint
    stt_fallback: str | None = None  # "budget" or "failed": the final transcript did not come
    stt_reused_partial: bool | None = None
    stt_discarded_finals: int | None = None
    speculation: str | None = None  # "hit": the reply prepared during the pause was sent
    speculation_misses: int = 0
    speculation_wasted_cpu_ms: float = 0.0
    route: str | None = None
    route_reason: str | None = None
    route_ms: float | None = None
    route_confidence: float | None = None
    action: str | None = None  # an instant route's action (repeat, stop, ...)
    first_audio_budget_miss: bool = False
    llm: FallbackRecord | None = None  # the LLM cascade's attempts, when a cascade answered
    answered_by: str | None = None
    end_of_turn: dict[str, Any] | None = None  # eot_signal, eot_decision, eot_score... (session/end_of_turn.py)

    def set_end_of_turn(self, verdict: Any) -> dict[str, Any]:
        """Keep the end-of-turn verdict (a session.end_of_turn.Verdict) for `turn.metrics`."""
        self.end_of_turn = verdict.to_wire()
        return self.end_of_turn

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = dict(self.end_of_turn or {})
        for name in ("eot_probability", "stt_fallback", "stt_reused_partial", "stt_discarded_finals",
                     "speculation", "route", "route_reason", "route_ms", "route_confidence", "action"):
            value = getattr(self, name)
            if value is not None:
                wire[name] = value
        if self.speculation_misses:
            wire.update(speculation_misses=self.speculation_misses,
                        speculation_wasted_cpu_ms=round(self.speculation_wasted_cpu_ms, 1))
        if self.first_audio_budget_miss:
            wire["first_audio_budget_miss"] = True
        if self.llm is not None:
            wire.update(self.llm.summary())
        if self.answered_by is not None:
            wire["answered_by"] = self.answered_by
        return wire


@dataclass
class TurnTimeline:
    """Monotonic timestamps (seconds) of one turn's milestones; the first write of a mark wins."""

    origin: str = "speech_end"  # "speech_end" for voice turns, "input_end" for text turns
    marks: dict[str, float] = field(default_factory=dict)
    report: TurnReport = field(default_factory=TurnReport)

    def mark(self, name: str, t: float) -> None:
        self.marks.setdefault(name, t)

    def summary(self) -> dict[str, Any]:
        origin_t = self.marks.get(self.origin)
        if origin_t is None:
            return {"marks_ms": {}, "stages_ms": {}, "voice_to_voice_ms": None}
        marks_ms = {
            name: round(1000.0 * (t - origin_t), 1)
            for name, t in sorted(self.marks.items(), key=lambda item: item[1])
        }
        stages_ms: dict[str, float] = {}
        latest = origin_t
        for mark, stage in STAGES.items():
            t = self.marks.get(mark)
            if t is None:
                continue
            stages_ms[stage] = round(1000.0 * max(0.0, t - latest), 1)
            latest = max(latest, t)
        sent = self.marks.get("first_audio_sent")
        v2v = round(1000.0 * (sent - origin_t), 1) if sent is not None else None
        return {"marks_ms": marks_ms, "stages_ms": stages_ms, "voice_to_voice_ms": v2v, **self.report.to_wire()}


class PipelineMetrics:
    """Prometheus collectors for one server process (own registry, so tests can make many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        buckets = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
        self.stage_seconds = Histogram(
            "vp_stage_seconds", "Each stage's share of voice-to-voice latency", ["stage"],
            buckets=buckets, registry=self.registry,
        )
        self.voice_to_voice_seconds = Histogram(
            "vp_voice_to_voice_seconds", "End of user speech to first reply audio sent", ["input"],
            buckets=buckets, registry=self.registry,
        )
        self.turns = Counter("vp_turns_total", "Turns by outcome", ["status"], registry=self.registry)
        self.interruptions = Counter("vp_interruptions_total", "Barge-ins", registry=self.registry)
        self.errors = Counter("vp_errors_total", "Errors sent to clients", ["code"], registry=self.registry)
        self.audio_in_dropped = Counter(
            "vp_audio_in_dropped_frames_total", "Input audio frames dropped (queue full)", registry=self.registry
        )
        self.sessions = Gauge("vp_sessions", "Open sessions", registry=self.registry)
        self.worker_restarts = Gauge(
            "vp_worker_restarts_total", "Times the supervisor restarted the server after a crash", registry=self.registry
        )
        self.routes = Counter("vp_routes_total", "Turns by route", ["route"], registry=self.registry)
        self.answers = Counter("vp_answers_total", "Replies by the level that answered", ["level"], registry=self.registry)
        self.escalations = Counter("vp_escalations_total", "Escalation events sent", registry=self.registry)
        self.speculations = Counter(
            "vp_speculations_total", "Speculative replies by outcome (hit: sent, miss: discarded)", ["outcome"],
            registry=self.registry,
        )
        self.speculation_wasted_cpu = Counter(
            "vp_speculation_wasted_cpu_seconds_total", "CPU time spent on discarded speculative replies",
            registry=self.registry,
        )
        self.end_of_turn = Counter(
            "vp_end_of_turn_total", "Turn endpoints by end-of-turn signal (audio, audio+text, text, silence) and "
            "the model's decision at the last pause (complete, unsure, incomplete, failed, late, none)",
            ["signal", "decision"], registry=self.registry,
        )
        self.end_of_turn_score = Histogram(
            "vp_end_of_turn_score", "The end-of-turn model's score at the pause that ended the turn", ["signal"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99), registry=self.registry,
        )
        self.end_of_turn_model_seconds = Histogram(
            "vp_end_of_turn_model_seconds", "Wall time of the audio end-of-turn model at a pause",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0), registry=self.registry,
        )
        self.shed = Counter(
            "vp_shed_total", "Work skipped because a stage was behind (partial, speculation)", ["work"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "vp_fallbacks_total", "Fallbacks and budget misses", ["stage", "reason"], registry=self.registry
        )
        self.barge_ins = Counter(
            "vp_barge_in_judged_total", "Speech over a paused reply, by verdict (backchannel, no_words: resumed; "
            "words, long_speech, turn_ended: interrupted)", ["verdict"], registry=self.registry,
        )
        self.echo_frames = Counter(
            "vp_echo_frames_total", "Input VAD frames taken for the assistant's own voice (echo) and not speech",
            registry=self.registry,
        )
        # Admission (app/capacity.py): the host sets the gauges' functions, read at each scrape.
        self.admission_open = Gauge(
            "vp_admission_open", "1 while the worker admits new sessions by its measured latency, 0 while it refuses "
            "them (server.max_sessions still applies)", registry=self.registry,
        )
        self.admission_p90_seconds = Gauge(
            "vp_admission_p90_seconds", "Recent turns' p90 from the end of a turn to the first reply audio, as "
            "admission sees it (NaN: too few recent turns)", registry=self.registry,
        )
        self.event_loop_lag_seconds = Gauge(
            "vp_event_loop_lag_seconds", "How late this worker's event loop ran a 50 ms timer, p90 over the last "
            "10 s (app/loop_lag.py; NaN: not sampled yet)", registry=self.registry,
        )
        self.turn_listeners: list[Callable[[dict[str, Any]], None]] = []  # each finished turn's summary

    def observe_end_of_turn(self, verdict: dict[str, Any]) -> None:
        """One turn's endpoint decision: by signal and decision, with the model's score and time."""
        self.end_of_turn.labels(verdict["eot_signal"], verdict["eot_decision"]).inc()
        if "eot_score" in verdict:
            self.end_of_turn_score.labels(verdict["eot_signal"]).observe(verdict["eot_score"])
        if "eot_model_ms" in verdict:
            self.end_of_turn_model_seconds.observe(verdict["eot_model_ms"] / 1000.0)

    def observe_turn(self, summary: dict, input_kind: str, status: str) -> None:
        self.turns.labels(status).inc()
        for listener in self.turn_listeners:
            listener(summary)
        for stage, ms in summary.get("stages_ms", {}).items():
            self.stage_seconds.labels(stage).observe(ms / 1000.0)
        if summary.get("voice_to_voice_ms") is not None:
            self.voice_to_voice_seconds.labels(input_kind).observe(summary["voice_to_voice_ms"] / 1000.0)
