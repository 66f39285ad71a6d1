"""Hang-up storms of N concurrent sessions against a running server: does it stay up and answer?

Usage (repository root, project environment, a server on loopback):

    .venv/bin/python scripts/storm_levels.py --url ws://127.0.0.1:8765/v1/realtime \
        --levels 16,32,64 --seconds 30 --out storm.json

Each level runs the storm clients of tests/integration/storm_client.py (askers, cancellers,
resetters, vanishers and callers that hang up mid-reply, in the storm's default proportions scaled
to N sessions) for `--seconds`, then asks one plain question on a fresh session. Written to
`--out`: per level the storm's counts, the error codes, whether /ready still answered and whether
the question after the storm got a completed reply. Exit status 1 if the server stopped answering.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.integration.storm_client

from tests.integration.storm_client import (  # noqa: E402
    DEFAULT_MIX, SPOKEN_QUESTIONS, StormPlan, StormStats, ask_once, check_loopback, run_storm, speak,
)


def scaled_mix(sessions: int) -> dict[str, int]:
    """The default mix's proportions over `sessions` concurrent sessions (each behaviour at least one)."""
    total = sum(DEFAULT_MIX.values())
    mix = {name: max(1, round(sessions * count / total)) for name, count in DEFAULT_MIX.items()}
    while sum(mix.values()) > sessions and max(mix.values()) > 1:
        mix[max(mix, key=mix.__getitem__)] -= 1
    while sum(mix.values()) < sessions:
        mix["asker"] += 1
    return mix


def ready(url: str) -> int | None:
    http = url.replace("ws://", "http://").replace("/v1/realtime", "/ready")
    try:
        with urllib.request.urlopen(http, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


async def level(url: str, sessions: int, seconds: float, speech, seed: int) -> dict:
    stats = StormStats()
    plan = StormPlan(url, seconds, 10_000_000, seed=seed, mix=scaled_mix(sessions), speech=speech)
    started = time.monotonic()
    await run_storm(plan, stats)
    await asyncio.sleep(2.0)  # sessions the storm left behind are torn down
    status = ready(url)
    after = await ask_once(url, "What is the capital of France?", timeout_s=60) if status is not None else None
    data = {k: v for k, v in asdict(stats).items() if k not in ("failures", "errors")}
    data["sessions_started"] = data.pop("sessions")
    return {**data, "sessions": sessions, "mix": plan.mix, "wall_s": round(time.monotonic() - started, 1),
            "errors": dict(stats.errors), "client_failures": dict(stats.failures), "ready_status_after": status,
            "question_after": (after or {}).get("status"), "summary": stats.summary()}


async def main_async(args: argparse.Namespace) -> int:
    check_loopback(args.url)
    speech = [] if args.no_speech else await asyncio.to_thread(speak, SPOKEN_QUESTIONS)
    results = []
    for n in (int(x) for x in args.levels.split(",") if x.strip()):
        result = await level(args.url, n, args.seconds, speech, args.seed)
        print(f"storm N={n}: {result['summary']}; /ready {result['ready_status_after']}, "
              f"question after: {result['question_after']}", file=sys.stderr, flush=True)
        results.append(result)
        if result["ready_status_after"] is None:
            break
    if args.out:
        Path(args.out).write_text(json.dumps({"url": args.url, "seconds": args.seconds, "levels": results}, indent=1))
    return 0 if all(r["ready_status_after"] is not None for r in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/realtime", help="loopback only")
    parser.add_argument("--levels", default="16,32,64")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each storm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-speech", action="store_true", help="text turns only (no Piper needed)")
    parser.add_argument("--out", help="write the results as JSON here")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
