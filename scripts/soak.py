"""Soak a running server with the storm clients for N minutes and report its memory over time.

Usage (from the repository root, inside the project's environment, against a server on loopback):

    .venv/bin/python scripts/soak.py --url ws://127.0.0.1:8765/v1/realtime [--minutes 10]
        [--pid PID] [--seed 0] [--max-messages 10000000] [--no-speech]

Every 10 s it samples the server's resident memory: VmRSS from /proc/PID/status (PID from --pid,
else the process listening on the URL's port), or `process_resident_memory_bytes` from /metrics
when no process is found. At the end it prints messages sent, hang-ups survived, RSS at the start
and the end, its growth and its maximum. Exit status 1 if the server went away during the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.integration.storm_client

from tests.integration.storm_client import (  # noqa: E402
    SPOKEN_QUESTIONS, StormPlan, StormStats, check_loopback, run_storm, speak,
)

SAMPLE_S = 10.0


def listening_pid(port: int) -> int | None:
    """The process with a TCP socket listening on `port`, found through /proc (Linux only)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:  # another user's process, or one that just ended
            continue
    return None


def rss_from_proc(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) * 1024 if found else None


def rss_from_metrics(url: str) -> int | None:
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    try:
        with urllib.request.urlopen(f"{scheme}://{parts.netloc}/metrics", timeout=5) as response:
            body = response.read().decode()
    except OSError:
        return None
    found = re.search(r"^process_resident_memory_bytes (\S+)$", body, re.M)
    return int(float(found.group(1))) if found else None


def rss_reader(url: str, pid: int | None):
    """A function returning the server's RSS in bytes (None once it is gone), and how it reads it."""
    pid = pid or listening_pid(urlsplit(url).port or 80)
    if pid is not None:
        return (lambda: rss_from_proc(pid)), f"/proc/{pid}/status"
    return (lambda: rss_from_metrics(url)), "/metrics"


async def sample(read_rss, samples: list[tuple[float, int]], gone: list[bool], until: float) -> None:
    """RSS every SAMPLE_S seconds until `until`; marks `gone` when the server cannot be read any more."""
    start = time.monotonic()
    while not gone[0]:
        rss = await asyncio.to_thread(read_rss)
        if rss is None:
            gone[0] = True
            return
        samples.append((time.monotonic() - start, rss))
        print(f"  {samples[-1][0]:7.0f} s  RSS {rss / 2**20:8.1f} MiB", flush=True)
        if time.monotonic() + SAMPLE_S > until:
            return
        await asyncio.sleep(SAMPLE_S)


def report(stats: StormStats, samples: list[tuple[float, int]], gone: bool, where: str) -> str:
    mib = [rss / 2**20 for _, rss in samples]
    lines = [f"soak: {stats.summary()}",
             f"hang-ups survived: {0 if gone else stats.hangups}" + ("  (the server went away)" if gone else "")]
    if mib:
        lines.append(f"RSS ({where}): start {mib[0]:.1f} MiB, end {mib[-1]:.1f} MiB, "
                     f"growth {mib[-1] - mib[0]:+.1f} MiB, max {max(mib):.1f} MiB over {len(mib)} samples")
    else:
        lines.append(f"RSS ({where}): not readable (give --pid)")
    return "\n".join(lines)


async def soak(args: argparse.Namespace) -> int:
    check_loopback(args.url)
    read_rss, where = rss_reader(args.url, args.pid)
    speech = [] if args.no_speech else await asyncio.to_thread(speak, SPOKEN_QUESTIONS)
    duration_s = args.minutes * 60.0
    samples: list[tuple[float, int]] = []
    gone = [False]
    stats = StormStats()
    plan = StormPlan(args.url, duration_s, args.max_messages, seed=args.seed, speech=speech, stop=lambda: gone[0])
    sampler = asyncio.create_task(sample(read_rss, samples, gone, time.monotonic() + duration_s))
    await run_storm(plan, stats)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    final = await asyncio.to_thread(read_rss)  # one last sample, after the storm
    if final is None:
        gone[0] = True
    elif samples:
        samples.append((samples[-1][0], final))
    print(report(stats, samples, gone[0], where))
    return 1 if gone[0] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/realtime", help="loopback only")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pid", type=int, help="the server's process id (default: found from the URL's port)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-messages", type=int, default=10_000_000, help="stop early after this many frames")
    parser.add_argument("--no-speech", action="store_true", help="text turns only (no Piper needed)")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
