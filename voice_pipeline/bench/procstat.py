"""CPU time and memory of a process, read from /proc (Linux), and facts about this machine."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_VERSIONED = ("voice-pipeline", "faster-whisper", "ctranslate2", "llama_cpp_python", "piper-tts",
              "onnxruntime", "numpy", "websockets", "aiohttp", "matplotlib")


@dataclass(frozen=True)
class CpuSample:
    t: float  # time.monotonic()
    cpu_s: float  # user + system CPU seconds of the process so far


def cpu_sample(pid: int) -> CpuSample:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" closing the command name, utime and stime are fields 12 and 13 (0-based 11, 12).
    return CpuSample(time.monotonic(), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)


def memory_kib(pid: int) -> dict[str, int]:
    """Resident memory now (VmRSS) and its peak so far (VmHWM), in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class ProcessMeter:
    """CPU use between `start()` and `stop()`, in cores (1.0 = one core busy), and peak memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: CpuSample | None = None

    def start(self) -> None:
        self._start = cpu_sample(self.pid)

    def stop(self) -> dict:
        end = cpu_sample(self.pid)
        start = self._start or end
        wall_s = max(1e-9, end.t - start.t)
        memory = memory_kib(self.pid)
        return {
            "cpu_seconds": round(end.cpu_s - start.cpu_s, 2),
            "wall_seconds": round(wall_s, 2),
            "cpu_cores_used": round((end.cpu_s - start.cpu_s) / wall_s, 2),
            "cpu_percent_of_machine": round(100.0 * (end.cpu_s - start.cpu_s) / wall_s / (os.cpu_count() or 1), 1),
            "rss_mib": round(memory.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
        }


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_mib": _mem_total_mib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "gpu": _gpu(),
    }


def versions() -> dict:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["espeak-ng"] = _command_output(["espeak-ng", "--version"])
    out["git_commit"] = _command_output(["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "HEAD"])
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    return _command_output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])


def _command_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


async def stop_process(process: subprocess.Popen | None, grace_s: float = 20.0) -> None:
    """SIGTERM a child the bench started, then SIGKILL it if it is still running after `grace_s`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        await asyncio.to_thread(process.wait, grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait)
