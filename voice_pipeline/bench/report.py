"""Write a benchmark run: report.json, report.md and PNG charts (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

from voice_pipeline.bench.procstat import busiest_summary, stages_summary
from voice_pipeline.bench.summary import MARK_NAMES, STAGE_NAMES

CHARTS = ("cdf_stages.png", "concurrency.png", "baselines.png")


def write_report(report: dict, out_dir: Path, command: str, chart_prefix: str = "") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    report["command"] = command
    paths["json"].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    charts = write_charts(report, out_dir)
    paths.update(charts)
    paths["markdown"].write_text(markdown(report, {k: chart_prefix + p.name for k, p in charts.items()}), encoding="utf-8")
    return paths


def write_charts(report: dict, out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    samples = [s for s in report["samples"] if s["system"] == "pipeline" and s["concurrency"] == 1 and s["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for stage in STAGE_NAMES:
        _cdf(ax, [s["stages_ms"].get(stage) for s in samples], stage)
    _cdf(ax, [s["voice_to_voice_ms"] for s in samples], "voice-to-voice (client)", linewidth=2.5, color="black")
    ax.set(xlabel="ms", ylabel="fraction of turns", title="This pipeline, one session: latency CDF per stage")
    ax.set_xscale("symlog", linthresh=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths["cdf_stages"] = _save(fig, out_dir / "cdf_stages.png")

    concurrency = report["summary"]["concurrency"]
    levels = concurrency["levels"]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [lv["sessions"] for lv in levels]
    for pct, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^--")):
        ax.plot(xs, [lv["voice_to_voice_ms"][pct] for lv in levels], style, label=pct)
    ax.axhline(concurrency["limit_p95_voice_to_voice_ms"], color="red", linestyle=":", label="p95 limit")
    ax.set(xlabel="concurrent sessions", ylabel="voice-to-voice ms", title="Voice-to-voice against concurrency")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.grid(alpha=0.3)
    ax.legend()
    paths["concurrency"] = _save(fig, out_dir / "concurrency.png")

    systems = report["summary"]["baselines"]["systems"]
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(systems)
    p50 = [systems[n]["voice_to_voice_ms"]["p50"] or 0 for n in names]
    p95 = [systems[n]["voice_to_voice_ms"]["p95"] or 0 for n in names]
    ax.barh([i + 0.2 for i in range(len(names))], p50, height=0.4, label="p50")
    ax.barh([i - 0.2 for i in range(len(names))], p95, height=0.4, label="p95")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set(xlabel="voice-to-voice ms (same items)", title="This pipeline against its baselines")
    ax.grid(alpha=0.3, axis="x")
    ax.legend()
    paths["baselines"] = _save(fig, out_dir / "baselines.png")
    return paths


def _cdf(ax, values, label, **style) -> None:
    present = sorted(v for v in values if v is not None)
    if present:
        fractions = [0.0] + [(i + 1) / len(present) for i in range(len(present))]
        ax.step([present[0], *present], fractions, where="post", label=label, **style)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _row(name: str, s: dict) -> str:
    cells = [s.get(k) for k in ("p50", "p95", "p99", "min", "max", "count")]
    return f"| {name} | " + " | ".join("–" if c is None else f"{c:g}" for c in cells) + " |"


_HEAD = "| figure (ms) | p50 | p95 | p99 | min | max | count |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"


def markdown(report: dict, charts: dict[str, str]) -> str:
    s, m, cfg = report["summary"], report["machine"], report["configuration"]
    p = s["pipeline"]
    lines = [
        f"# Benchmark run ({report['mode']})", "",
        f"Command: `{report.get('command', '')}`  ",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, {m['memory_total_mib']} MiB, GPU: {m['gpu'] or 'none'}; "
        f"load average at start {m['load_average_at_start']}  ",
        f"Versions: git {str(report['versions'].get('git_commit'))[:10]}, faster-whisper {report['versions'].get('faster-whisper')}, "
        f"llama-cpp-python {report['versions'].get('llama_cpp_python')}, piper-tts {report['versions'].get('piper-tts')}  ",
        f"Corpus v{cfg['corpus']['version']}: {len(cfg['corpus']['items'])} items; run took {report['duration_s']} s.", "",
        "## This pipeline, one session at a time", "",
        f"{p['turns']} turns, status {p['status']}, premature endpoints (a long pause taken for the end): "
        f"{p['premature_endpoints']}.", "", _HEAD,
        _row("**voice-to-voice (client)**", p["voice_to_voice_ms"]),
        _row("voice-to-voice (server marks)", p["server_voice_to_voice_ms"]),
        *[_row(f"stage: {n}", p["stages_ms"][n]) for n in STAGE_NAMES],
        *[_row(f"mark: {n}", p["marks_ms"][n]) for n in MARK_NAMES], "",
        f"![latency CDF per stage]({charts['cdf_stages']})", "",
        "## Models, resources, cold start", "",
        f"- STT word error rate: **{s['stt_wer']['wer']}** ({s['stt_wer']['errors']} errors / {s['stt_wer']['words']} words); "
        f"by engine {s['stt_wer']['by_engine']}; by noise {s['stt_wer']['by_noise']}",
        f"- LLM tokens/s: tokens 1→20 in the server p50 {s['llm_tokens_per_s']['pipeline_tokens_1_to_20']['p50']}; "
        f"whole answers (naive) p50 {s['llm_tokens_per_s']['naive_whole_answer']['p50']}",
        f"- TTS real-time factor (Piper, whole answers, in-process): p50 {s['tts_real_time_factor']['p50']}",
        f"- Server CPU and memory, one session: {p['resources']}",
        f"- Cold start: process start → /ready {s['cold_start']['process_to_ready_ms']} ms; server-reported "
        f"{s['cold_start']['server_reported']}; first turn after ready: voice-to-voice "
        f"{s['cold_start']['first_turn_after_ready']['voice_to_voice_ms']} ms", "",
    ]
    lines += _concurrency_md(s["concurrency"], charts) + _baselines_md(s["baselines"], charts)
    lines += _turn_taking_md(s.get("turn_taking", {}).get("systems", {}))
    return "\n".join(lines) + "\n"


def _concurrency_md(c: dict, charts: dict[str, str]) -> list[str]:
    lines = [
        "## Concurrent sessions", "",
        f"Limit: p95 voice-to-voice ≤ {c['limit_p95_voice_to_voice_ms']:g} ms. Most sessions within it: "
        f"**{c['max_sessions_within_limit']}** on {c['cpu_cores']} cores = **{c['sessions_per_core_at_limit']} sessions "
        f"per core**{'' if c['limit_reached'] else ' (the limit was not reached within the sweep)'}.", "",
        "| sessions | turns | p50 | p95 | p99 | max | refused | playback stalls | server CPU cores used | CPU by stage (cores) | busiest thread (cores) | GPU % | peak RSS MiB | status |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for lv in c["levels"]:
        v, r = lv["voice_to_voice_ms"], lv["resources"]
        lines.append(f"| {lv['sessions']} | {lv['turns']} | {v['p50']} | {v['p95']} | {v['p99']} | {v['max']} | "
                     f"{lv.get('refused', 0)} | {_stalls_md(lv.get('playback_stalls'))} | "
                     f"{r.get('cpu_cores_used')} | {stages_summary(r)} | {busiest_summary(r)} | "
                     f"{r.get('gpu_utilisation_percent', 'n/a')} | "
                     f"{r.get('peak_rss_mib')} | {lv['status']} |")
    lines += ["", "Server CPU: the server process and its children (workers, LLM servers), CPU seconds ÷ wall "
              "seconds of the level. CPU by stage: the same CPU split by the thread that used it (pool threads "
              "are named for their lane, a library's own threads for the stage that loaded it; a worker's main "
              "thread is its event loop; other: the supervisor, helpers). Busiest thread: the one thread of "
              "them that used the most CPU; near 1.0 "
              "it is a serial lane at its limit (a worker's event loop is its main thread). Refused: sessions "
              "admission turned away (`server_busy`). Playback stalls (full replies only): turns whose audio, "
              "played as it arrived, stopped for want of the next audio after it had begun, and the longest stop.",
              ""]
    return lines + _shares_md(c["levels"]) + [f"![voice-to-voice against concurrency]({charts['concurrency']})", ""]


def _stalls_md(stalls: dict | None) -> str:
    if not stalls or not stalls.get("turns_measured"):
        return "n/a"
    longest = f", longest {stalls['longest_ms']} ms" if stalls["longest_ms"] is not None else ""
    return f"{stalls['turns_with_stall']} of {stalls['turns_measured']}{longest}"


def _shares_md(levels: list[dict]) -> list[str]:
    """Each stage's share of the server-side turn time (and its median) per level."""
    if not any(lv.get("stage_shares") for lv in levels):
        return []
    lines = ["Each stage's share of the server-side turn time (end of speech to first audio sent, summed over "
             "the level's answered turns), with its median in ms:", "",
             "| sessions | server p50 | " + " | ".join(STAGE_NAMES) + " |",
             "| ---: | ---: | " + " | ".join("---:" for _ in STAGE_NAMES) + " |"]
    for lv in levels:
        shares = lv.get("stage_shares") or {}
        cells = [f"{100 * sh['share']:.0f} % ({sh['p50_ms']})" if (sh := shares.get(n)) and sh["share"] is not None
                 else "–" for n in STAGE_NAMES]
        lines.append(f"| {lv['sessions']} | {(lv.get('server_voice_to_voice_ms') or {}).get('p50')} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def _turn_taking_md(systems: dict) -> list[str]:
    if not systems:
        return []
    lines = [
        "## Whole corpus, pauses included: final pass, partials, speculation and end-of-turn", "",
        "False cut-off: reply audio reached the client before the user had finished the question. "
        "stt p50: the server's STT stage (end of speech to final transcript).", "",
        "| system | what it is | turns | p50 | p95 | p50 pause items | stt p50 | WER | false cut-offs "
        "| premature endpoints | speculation hits | misses | hit rate | wasted CPU ms | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, sy in systems.items():
        v, vp = sy["voice_to_voice_ms"], sy["voice_to_voice_ms_pause_items"]
        stt = sy.get("stt_ms", {}).get("p50")
        lines.append(f"| {name} | {sy['description']} | {sy['turns']} | {v['p50']} | {v['p95']} | {vp['p50']} | "
                     f"{stt} | {sy.get('wer')} | "
                     f"{sy['false_cutoffs']} | {sy['premature_endpoints']} | "
                     f"{sy['speculation_hits']} | {sy['speculation_misses']} | {sy['speculation_hit_rate']} | "
                     f"{sy['speculation_wasted_cpu_ms']} | {sy['status']} |")
    return lines + [""]


def _baselines_md(b: dict, charts: dict[str, str]) -> list[str]:
    lines = [
        "## Baselines (same run, same models, same items)", "",
        f"Items: {', '.join(b['item_ids'])}. Ratio = baseline ÷ this pipeline (above 1: the baseline is slower).", "",
        "| system | what it is | p50 | p95 | ratio p50 | ratio p95 | stt p50 | llm→first piece p50 | tts p50 | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, sy in b["systems"].items():
        v, st = sy["voice_to_voice_ms"], sy["stages_ms"]
        lines.append(f"| {name} | {sy['description']} | {v['p50']} | {v['p95']} | {sy['ratio_p50_vs_pipeline']} | "
                     f"{sy['ratio_p95_vs_pipeline']} | {st['stt']['p50']} | {st['first_piece']['p50']} | "
                     f"{st['tts']['p50']} | {sy['status']} |")
    return lines + ["", f"![baselines]({charts['baselines']})", ""]
