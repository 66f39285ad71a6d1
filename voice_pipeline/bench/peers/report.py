"""The peers comparison written out: peers.json, peers.md and peers.png; `--docs` publishes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from voice_pipeline.bench.peers.run import MARKS

CHART = "peers.png"
START, END = "<!-- bench:peers:start -->", "<!-- bench:peers:end -->"


def write_peers_report(report: dict, out_dir: Path, command: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["command"] = command
    paths = {"json": out_dir / "peers.json", "markdown": out_dir / "peers.md", "chart": out_dir / CHART}
    paths["json"].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    write_chart(report, paths["chart"])
    paths["markdown"].write_text(markdown(report, CHART), encoding="utf-8")
    return paths


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["summary"])
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1.2, 1]})
    xs = range(len(names))
    for offset, pct in ((-0.2, "p50"), (0.2, "p95")):
        values = [report["summary"][n]["voice_to_voice_ms"][pct] or 0 for n in names]
        bars.bar([x + offset for x in xs], values, width=0.4, label=pct)
    bars.set_xticks(list(xs), names, rotation=20, ha="right", fontsize=8)
    bars.set(ylabel="voice-to-voice ms", title="End of speech to first reply audio")
    bars.legend()
    bars.grid(axis="y", alpha=0.3)
    for name in names:
        values = sorted(s["voice_to_voice_ms"] for s in report["samples"]
                        if s["system"] == name and s["voice_to_voice_ms"] is not None)
        if values:
            cdf.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=name)
    cdf.set(xlabel="voice-to-voice ms", ylabel="fraction of items", title="CDF, same items")
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ms(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def markdown(report: dict, chart: str) -> str:
    machine = report["machine"]
    load = machine.get("load_average_at_start") or []
    lines = [
        "## Peers: the same items, the same models (run)", "",
        f"`{report.get('command', '')}` ({report['mode']}, {report['duration_s']:.0f} s). Machine: "
        f"{machine.get('cpu_model', '?')}, {machine.get('cpu_count', '?')} cores; 1/5/15-minute load at the start: "
        f"{', '.join(f'{x:.2f}' for x in load) or '?'}, at the end: "
        f"{', '.join(f'{x:.2f}' for x in machine.get('load_average_at_end') or []) or '?'}. {len(report['configuration']['items'])} items, one session, "
        "one item after another.", "",
        "| system | ok / items | p50 ms | p95 ms | p99 ms | min | max | WER | endpoint p50 | STT final p50 "
        "| LLM 1st token p50 | first audio p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in report["summary"].items():
        v = s["voice_to_voice_ms"]
        marks = s["marks_ms"]
        lines.append(f"| `{name}` | {s['status'].get('ok', 0)} / {s['turns']} | {_ms(v['p50'])} | {_ms(v['p95'])} | "
                     f"{_ms(v['p99'])} | {_ms(v['min'])} | {_ms(v['max'])} | {s['wer']:.3f} | "
                     + " | ".join(_ms(marks[m]["p50"]) for m in ("endpoint", "stt_final", "llm_first_token",
                                                                  "first_audio_sent")) + " |")
    lines += ["", f"![voice-to-voice of each system]({chart})", ""]
    for name, s in report["summary"].items():
        failed = {k: v for k, v in s["status"].items() if k != "ok"}
        lines.append(f"- `{name}`: {s['description']}" + (f"; failed: {failed}" if failed else ""))
    own = {n: s["stages_ms"] for n, s in report["summary"].items() if s["stages_ms"]}
    if own:
        lines += ["", "Each system's own stage figures, p50 ms over the ok items (this pipeline: its turn.metrics "
                  "stages, 0 where speculation had it ready at the endpoint; Pipecat: its MetricsFrames):", ""]
        for name, stages in own.items():
            lines.append(f"- `{name}`: " + ", ".join(f"{k} {_ms(v['p50'])}" for k, v in stages.items()))
    versions = {k: v for k, v in report["versions"].items() if ":" in k or k in ("voice-pipeline", "llama_cpp_python")}
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    for peer, why in report["configuration"].get("not_adapted", {}).items():
        lines.append(f"Not run: `{peer}`: {why}.")
    return "\n".join(lines) + "\n"


def publish(out: Path, report: dict, repo_root: Path) -> None:
    """Copy the chart and JSON to docs/bench/ and put the table into docs/benchmarks.md."""
    docs_bench = repo_root / "docs" / "bench"
    docs_bench.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / CHART, docs_bench / CHART)
    shutil.copy(out / "peers.json", docs_bench / f"peers-{report['mode']}.json")
    page = repo_root / "docs" / "benchmarks.md"
    body = markdown(report, f"bench/{CHART}").replace("## Peers: the same items", "### Peers: the same items", 1)
    text = page.read_text(encoding="utf-8")
    block = f"{START}\n{body}{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page.write_text(text, encoding="utf-8")
