"""From raw per-turn samples to the report's summary: percentiles, WER, ratios, concurrency."""

from __future__ import annotations

import os
from collections import Counter

from voice_pipeline.metrics import EXTRA_MARKS, MARKS, STAGES

from voice_pipeline.bench.stats import ratio, summarize, word_error_rate
from voice_pipeline.bench.systems import TurnSample

STAGE_NAMES = tuple(STAGES.values())
MARK_NAMES = tuple(m for m in MARKS if m != "speech_end") + EXTRA_MARKS


def figures(samples: list[TurnSample]) -> dict:
    """Every latency figure of a set of turns: voice-to-voice, each stage, each mark."""
    return {
        "turns": len(samples),
        "status": dict(Counter(s.status for s in samples)),
        "premature_endpoints": sum(s.premature_endpoints for s in samples),
        "voice_to_voice_ms": summarize(s.voice_to_voice_ms for s in samples),
        "server_voice_to_voice_ms": summarize(s.server_voice_to_voice_ms for s in samples),
        "stages_ms": {name: summarize(s.stages_ms.get(name) for s in samples if s.status == "ok")
                      for name in STAGE_NAMES},
        "marks_ms": {name: summarize(s.marks_ms.get(name) for s in samples if s.status == "ok")
                     for name in MARK_NAMES},
        "llm_tokens_per_s": summarize(s.llm_tokens_per_s for s in samples),
    }


def wer_report(samples: list[TurnSample]) -> dict:
    out = word_error_rate((s.reference, s.transcript) for s in samples)
    for key, pick in (("by_engine", lambda s: s.engine), ("by_noise", lambda s: s.noise)):
        groups: dict[str, list[TurnSample]] = {}
        for s in samples:
            groups.setdefault(pick(s), []).append(s)
        out[key] = {name: word_error_rate((s.reference, s.transcript) for s in group)["wer"]
                    for name, group in sorted(groups.items())}
    return out


def summarize_run(samples: list[TurnSample], phases: dict, limit_ms: float, baseline_ids: list[str],
                  descriptions: dict[str, str], comparisons: dict[str, str] | None = None) -> dict:
    pipeline_n1 = [s for s in samples if s.system == "pipeline" and s.concurrency == 1]
    first = next((s for s in pipeline_n1 if s.first_turn_after_ready), None)
    cold = phases["cold_start"].get("pipeline", {})
    naive = [s for s in samples if s.system == "naive"]
    return {
        "pipeline": {**figures(pipeline_n1), "resources": phases["resources"].get("pipeline@1", {})},
        "stt_wer": wer_report(pipeline_n1),
        "llm_tokens_per_s": {
            "pipeline_tokens_1_to_20": summarize(s.llm_tokens_per_s for s in pipeline_n1),
            "naive_whole_answer": summarize(s.llm_tokens_per_s for s in naive),
        },
        "tts_real_time_factor": summarize(s.tts_real_time_factor for s in naive),
        "cold_start": {
            "process_to_ready_ms": cold.get("process_to_ready_ms"),
            "server_reported": cold.get("server", {}),
            "first_turn_after_ready": {"item_id": first.item_id if first else None,
                                       "voice_to_voice_ms": first.voice_to_voice_ms if first else None},
        },
        "concurrency": concurrency_report(samples, phases, limit_ms),
        "baselines": baselines_report(samples, phases, baseline_ids, descriptions),
        "turn_taking": turn_taking_report(samples, comparisons or {}),
    }


def turn_taking_report(samples: list[TurnSample], comparisons: dict[str, str]) -> dict:
    """Systems that play the whole corpus (pauses included): the final pass's encoder window, the
    partials' spacing, speculation and end-of-turn, each against the defaults."""
    if not comparisons:
        return {"systems": {}}
    systems = {}
    for name, description in {"pipeline": "the default settings (speculation auto: on when the start-up STT pass "
                                          "fits in half the endpoint window; end-of-turn off)",
                              **comparisons}.items():
        group = [s for s in samples if s.system == name and s.concurrency == 1]
        paused = [s for s in group if s.pause_ms]
        finished = [s for s in group if s.speculation or s.status == "ok"]
        systems[name] = {
            "description": description,
            "turns": len(group),
            "voice_to_voice_ms": summarize(s.voice_to_voice_ms for s in group),
            "voice_to_voice_ms_pause_items": summarize(s.voice_to_voice_ms for s in paused),
            "stt_ms": summarize(s.stages_ms.get("stt") for s in group if s.status == "ok"),
            "wer": word_error_rate((s.reference, s.transcript) for s in group)["wer"],
            "false_cutoffs": sum(s.spoke_over_user for s in group),
            "premature_endpoints": sum(s.premature_endpoints for s in group),
            "pause_items": len(paused),
            "speculation_hits": sum(s.speculation == "hit" for s in group),
            "speculation_misses": sum(s.speculation_misses for s in group),
            "speculation_hit_rate": round(sum(s.speculation == "hit" for s in group) / len(finished), 3)
            if finished else None,
            "speculation_wasted_cpu_ms": round(sum(s.speculation_wasted_cpu_ms for s in group), 1),
            "status": dict(Counter(s.status for s in group)),
        }
    return {"systems": systems}


def concurrency_report(samples: list[TurnSample], phases: dict, limit_ms: float) -> dict:
    levels = []
    for n in sorted({s.concurrency for s in samples if s.system == "pipeline"}):
        level = [s for s in samples if s.system == "pipeline" and s.concurrency == n]
        data = figures(level)
        levels.append({"sessions": n, "turns": len(level), "status": data["status"],
                       "refused": data["status"].get("refused", 0),
                       "voice_to_voice_ms": data["voice_to_voice_ms"], "stages_ms": data["stages_ms"],
                       "server_voice_to_voice_ms": data["server_voice_to_voice_ms"],
                       "stage_shares": stage_shares(level), "playback_stalls": playback_stalls(level),
                       "resources": phases["resources"].get(f"pipeline@{n}", {})})
    within = [lv["sessions"] for lv in levels if _within(lv, limit_ms)]
    best = max(within) if within else 0
    return {
        "limit_p95_voice_to_voice_ms": limit_ms,
        "levels": levels,
        "max_sessions_within_limit": best,
        "cpu_cores": os.cpu_count(),
        "sessions_per_core_at_limit": round(best / (os.cpu_count() or 1), 2),
        "limit_reached": any(not _within(lv, limit_ms) for lv in levels),
    }


def playback_stalls(samples: list[TurnSample]) -> dict:
    """Full replies: how many turns' audio stalled after it began (played as it arrived), the longest stall."""
    measured = [s.playback_gaps_ms for s in samples if s.playback_gaps_ms is not None]
    stalls = [gap for gaps in measured for gap in gaps]
    return {"turns_measured": len(measured), "turns_with_stall": sum(1 for gaps in measured if gaps),
            "longest_ms": max(stalls) if stalls else None}


def stage_shares(samples: list[TurnSample]) -> dict:
    """Each stage's part of the server-side turn time (end of speech to first audio sent, from
    turn.metrics) over the answered turns: its median in ms and its share of the summed time (the
    stages partition each turn, so the shares add up to 1)."""
    answered = [s for s in samples if s.status == "ok" and s.server_voice_to_voice_ms]
    total_ms = sum(s.server_voice_to_voice_ms for s in answered)
    return {name: {"p50_ms": summarize(s.stages_ms.get(name) for s in answered)["p50"],
                   "share": round(sum(s.stages_ms.get(name, 0.0) for s in answered) / total_ms, 3) if total_ms else None}
            for name in STAGE_NAMES}


def _within(level: dict, limit_ms: float) -> bool:
    p95 = level["voice_to_voice_ms"]["p95"]
    return p95 is not None and p95 <= limit_ms and level["status"].get("ok", 0) == level["turns"]


def baselines_report(samples: list[TurnSample], phases: dict, baseline_ids: list[str],
                     descriptions: dict[str, str]) -> dict:
    ids = set(baseline_ids)
    reference = [s for s in samples if s.system == "pipeline" and s.concurrency == 1 and s.item_id in ids]
    ref = summarize(s.voice_to_voice_ms for s in reference)
    systems = {}
    for name, description in descriptions.items():
        group = reference if name == "pipeline" else [s for s in samples if s.system == name]
        data = figures(group)
        v2v = data["voice_to_voice_ms"]
        systems[name] = {
            "description": description,
            "turns": data["turns"],
            "status": data["status"],
            "voice_to_voice_ms": v2v,
            "stages_ms": data["stages_ms"],
            "ratio_p50_vs_pipeline": ratio(v2v["p50"], ref["p50"]),
            "ratio_p95_vs_pipeline": ratio(v2v["p95"], ref["p95"]),
            "cold_start_ms": phases["cold_start"].get(name, {}).get("process_to_ready_ms"),
            "resources": phases["resources"].get(f"{name}@1", {}),
        }
    return {"item_ids": baseline_ids, "systems": systems}
