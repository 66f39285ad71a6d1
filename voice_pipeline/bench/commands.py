"""The `bench` sub-command."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def register(subparsers: argparse._SubParsersAction, evals: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="latency benchmark: stages, voice-to-voice, concurrency, baselines")
    bench.add_argument("--quick", action="store_true", help="a small run (under 3 minutes on 2 cores), for CI")
    bench.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "latest"),
                       help="directory for report.json, report.md, charts and server logs")
    bench.add_argument("--docs", action="store_true",
                       help="also publish the run: docs/benchmarks.md's results section and docs/bench/")
    bench.add_argument("--limit-ms", type=float, default=2500.0,
                       help="p95 voice-to-voice limit that ends the concurrency sweep (default 2500)")
    bench.add_argument("--max-concurrency", type=int, help="largest N tried (default 16; 2 with --quick)")
    bench.add_argument("--items-per-session", type=int, help="items each concurrent session plays (default 3)")
    bench.add_argument("--levels", help="only these concurrency levels, e.g. 1,4,6 (no N=1 corpus pass, "
                                        "no baselines); see docs/scaling.md")
    bench.add_argument("--full-replies", action="store_true",
                       help="wait for every whole reply instead of cutting it short after its first audio")
    bench.add_argument("--baselines", help="comma-separated systems to compare (see voice_pipeline/bench/systems.py)")
    bench.add_argument("--baseline-items", type=int, help="items each baseline plays (default 8; 2 with --quick)")
    bench.add_argument("--items", type=int, help="play only the first N corpus items (default: all; --quick: its own 4)")
    bench.add_argument("--corpus", help="corpus definition (default bench/corpus/v1.json)")
    bench.add_argument("--peers", help="compare other frameworks on the same items and models instead of the "
                                       "usual run: comma-separated, e.g. pipecat (each installed on demand into "
                                       "its own venv under the bench's cache; see docs/benchmarks.md)")
    bench.add_argument("--turn-taking", action="store_true",
                       help="instead of the usual run: the pause corpus through a server per end-of-turn signal "
                            "(false cut-offs, voice-to-voice), then backchannels, echo and barge-ins over a reply "
                            "(docs/turn-taking.md); --items limits the pause corpus")
    bench.add_argument("--signals", help="with --turn-taking: end-of-turn signals to run (default silence,text,audio+text)")
    bench.add_argument("--no-overlap", action="store_true", help="with --turn-taking: skip speech over the reply")
    bench.set_defaults(run=_bench)

    final = evals.add_parser("final-pass", help="cost and WER of the ways to run the final STT pass")
    final.add_argument("--model", default="tiny.en", help="whisper model (default tiny.en)")
    final.add_argument("--threads", type=int, default=2, help="CPU threads for whisper (default 2)")
    final.add_argument("--repeats", type=int, default=3, help="timed runs per item and strategy (median kept)")
    final.add_argument("--margin-s", type=float, default=2.0, help="silence after the speech in a fitted window")
    final.add_argument("--partial-lead-ms", type=float, default=700.0,
                       help="how long before the end of speech the simulated last partial ends")
    final.add_argument("--items", type=int, help="only the first N corpus items")
    final.add_argument("--json", action="store_true", help="print the report as JSON")
    final.set_defaults(run=_final_pass)


def _bench(args: argparse.Namespace) -> int:
    import logging

    from voice_pipeline.bench.report import write_report
    from voice_pipeline.bench.runner import RunConfig, run_benchmark
    from voice_pipeline.bench.systems import SYSTEMS

    logging.basicConfig(level=logging.WARNING)
    if args.turn_taking:
        from voice_pipeline.bench.turn_bench import main as turn_taking

        return turn_taking(args)
    if args.peers:
        return _peers(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "levels.jsonl").unlink(missing_ok=True)
    overrides = {"limit_ms": args.limit_ms, "log_dir": str(out / "logs"), "levels_path": str(out / "levels.jsonl")}
    if args.max_concurrency:
        overrides["max_concurrency"] = args.max_concurrency
    if args.items_per_session:
        overrides["items_per_session"] = args.items_per_session
    if args.levels:
        overrides["levels"] = tuple(int(n) for n in args.levels.split(",") if n.strip())
    if args.full_replies:
        overrides["full_replies"] = True
    if args.corpus:
        overrides["corpus_path"] = args.corpus
    if args.items:
        overrides["max_items"] = args.items
    if args.baseline_items:
        overrides["baseline_items"] = args.baseline_items
    if args.baselines is not None:
        names = tuple(n for n in args.baselines.split(",") if n)
        unknown = [n for n in names if n not in SYSTEMS]
        if unknown:
            print(f"bench: unknown systems {unknown}; known: {sorted(SYSTEMS)}", file=sys.stderr)
            return 2
        overrides["baselines"] = names
    config = RunConfig.quick_config(**overrides) if args.quick else RunConfig(**overrides)
    report = asyncio.run(run_benchmark(config, progress=lambda line: print(line, file=sys.stderr, flush=True)))
    command = "voice-pipeline " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "voice-pipeline bench"
    paths = write_report(report, out, command)
    if args.docs:
        publish(out, report, command)
    print(paths["markdown"].read_text(encoding="utf-8"))
    if args.levels:  # no N=1 corpus pass: every level must have turns that were answered
        return 0 if all(lv["status"].get("ok") for lv in report["summary"]["concurrency"]["levels"]) else 1
    return 0 if report["summary"]["pipeline"]["status"].get("ok") else 1


def _peers(args: argparse.Namespace) -> int:
    from voice_pipeline.bench.peers.report import publish as publish_peers
    from voice_pipeline.bench.peers.report import write_peers_report
    from voice_pipeline.bench.peers.run import PeerRunConfig, all_ok, run_peers, unknown_peers

    peers = tuple(p for p in args.peers.split(",") if p)
    if unknown := unknown_peers(peers):
        print(f"bench: unknown peers {unknown}; known: pipecat, livekit", file=sys.stderr)
        return 2
    out = Path(args.out)
    overrides = {"peers": peers, "log_dir": str(out / "logs")}
    if args.corpus:
        overrides["corpus_path"] = args.corpus
    if args.items:
        overrides["max_items"] = args.items
    config = PeerRunConfig.quick_config(**overrides) if args.quick else PeerRunConfig(**overrides)
    report = asyncio.run(run_peers(config, progress=lambda line: print(line, file=sys.stderr, flush=True)))
    command = "voice-pipeline " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = write_peers_report(report, out, command)
    if args.docs:
        publish_peers(out, report, REPO_ROOT)
    print(paths["markdown"].read_text(encoding="utf-8"))
    return 0 if all_ok(report) else 1


def _final_pass(args: argparse.Namespace) -> int:
    import json

    from voice_pipeline.bench.final_pass import evaluate, table

    report = evaluate(args.model, args.threads, args.repeats, args.margin_s, args.partial_lead_ms, max_items=args.items)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


def publish(out: Path, report: dict, command: str) -> None:
    """Copy the charts and JSON to docs/bench/ and put the Markdown summary into docs/benchmarks.md."""
    from voice_pipeline.bench.report import CHARTS, markdown

    docs_bench = REPO_ROOT / "docs" / "bench"
    docs_bench.mkdir(parents=True, exist_ok=True)
    for name in CHARTS:
        shutil.copy(out / name, docs_bench / name)
    shutil.copy(out / "report.json", docs_bench / f"{report['mode']}.json")
    page = REPO_ROOT / "docs" / "benchmarks.md"
    body = markdown(report, {Path(n).stem: f"bench/{n}" for n in CHARTS}).replace("# Benchmark run", "## Latest run", 1)
    body = body.replace("\n## ", "\n### ").replace("### Latest run", "## Latest run", 1)
    text = page.read_text(encoding="utf-8") if page.exists() else "# Benchmarks\n"
    start, end = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
    block = f"{start}\n{body}{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page.write_text(text, encoding="utf-8")
