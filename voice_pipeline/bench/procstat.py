"""CPU time and memory of a process and its children, read from /proc (Linux), GPU utilisation
sampled from `nvidia-smi` where there is one, and facts about this machine."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterable
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


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of `pid` and every live descendant (a supervised worker, LLM servers), each with
    the children it has reaped (utime, stime, cutime, cstime)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        cpu[child] = sum(int(f) for f in fields[11:15]) / _CLOCK_TICKS
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return {member: cpu[member] for member in tree if member in cpu}


def thread_cpu_s(pids: Iterable[int]) -> dict[tuple[int, int], float]:
    """CPU seconds of every thread of these processes, by (pid, tid) (the main thread: tid == pid)."""
    out = {}
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            out[(pid, int(stat.parent.name))] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return out


def process_name(pid: int) -> str:
    """What a process runs, in a few words: llama-server, a pipeline worker, the supervisor."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    if "--worker" in words:
        return "pipeline worker"
    return os.path.basename(words[0]) if not words[0].startswith("python") else " ".join(
        os.path.basename(w) for w in words[:3])


def busiest_threads(start: dict[tuple[int, int], float], end: dict[tuple[int, int], float], wall_s: float,
                    count: int = 3) -> list[dict]:
    """The threads that used the most CPU between two `thread_cpu_s` readings, in cores: one near
    1.0 is a serial lane that has saturated (a worker's event loop is its main thread)."""
    used = sorted(((cpu - start.get(key, 0.0), key) for key, cpu in end.items()), reverse=True)[:count]
    return [{"process": process_name(pid), "pid": pid, "main_thread": pid == tid, "thread": thread_name(pid, tid),
             "cores": round(cpu / wall_s, 2)} for cpu, (pid, tid) in used]


def thread_name(pid: int, tid: int) -> str:
    """A thread's OS name (the pipeline names its pools' threads: llm_0, tts-later_0, stt-batch_0, ...)."""
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except OSError:
        return "gone"


# Which stage a pipeline thread works for, by its OS name (pool threads are named for their lane,
# and a library's own threads for the stage that loaded it: app/compose.py).
_STAGE_PREFIXES = (("stt", ("stt-",)), ("llm", ("llm",)), ("tts", ("tts",)), ("vad", ("vad-",)),
                   ("end of turn", ("eot", "smart-turn")))


def thread_stage(process: str, main_thread: bool, thread: str) -> str:
    """The stage a thread's CPU counts for: a worker's main thread is its event loop (sessions,
    audio framing, the protocol), a llama-server is the LLM, unnamed threads are "other"."""
    if process == "llama-server":
        return "llm"
    if main_thread:
        return "event loop" if process == "pipeline worker" else "other"
    return next((stage for stage, prefixes in _STAGE_PREFIXES if thread.startswith(prefixes)), "other")


def cpu_by_stage(start: dict[tuple[int, int], float], end: dict[tuple[int, int], float],
                 wall_s: float) -> dict[str, float]:
    """Cores each stage used between two `thread_cpu_s` readings (summed over its threads), largest first."""
    used: dict[str, float] = {}
    for (pid, tid), cpu in end.items():
        stage = thread_stage(process_name(pid), pid == tid, thread_name(pid, tid))
        used[stage] = used.get(stage, 0.0) + max(0.0, cpu - start.get((pid, tid), 0.0))
    return {stage: round(cpu / wall_s, 2) for stage, cpu in sorted(used.items(), key=lambda kv: -kv[1])}


def stages_summary(resources: dict) -> str:
    """ "stt 0.31 · llm 0.35 · ..." (cores), or "n/a"."""
    stages = resources.get("cpu_by_stage") or {}
    return " · ".join(f"{stage} {cores}" for stage, cores in stages.items()) or "n/a"


def busiest_summary(resources: dict) -> str:
    """The thread that used the most CPU: "1.0 cores (pipeline worker, main thread)", or "n/a"."""
    threads = resources.get("busiest_threads") or []
    if not threads:
        return "n/a"
    top = threads[0]
    which = "main thread" if top["main_thread"] else top.get("thread", "")
    return f"{top['cores']} cores ({top['process']}{', ' + which if which else ''})"


def memory_kib(pid: int) -> dict[str, int]:
    """Resident memory now (VmRSS) and its peak so far (VmHWM), in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def tree_memory_kib(members: Iterable[int]) -> dict[str, int]:
    """Resident memory summed over processes: VmRSS now, and VmHWM (each one's own peak, so the
    sum is an upper bound of the peak they had together)."""
    total = {"VmRSS": 0, "VmHWM": 0}
    for member in members:
        try:
            for key, kib in memory_kib(member).items():
                total[key] += kib
        except OSError:
            continue  # gone meanwhile
    return total


class ProcessMeter:
    """CPU use of a process and its descendants between `start()` and `stop()`, in cores (1.0 =
    one core busy; CPU seconds / wall seconds), and the process's peak memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: tuple[float, dict[int, float], dict[tuple[int, int], float]] | None = None

    def start(self) -> None:
        tree = tree_cpu_s(self.pid)
        self._start = (time.monotonic(), tree, thread_cpu_s(tree))

    def stop(self) -> dict:
        end_t, end = time.monotonic(), tree_cpu_s(self.pid)
        threads_end = thread_cpu_s(end)
        start_t, start, threads_start = self._start or (end_t, end, threads_end)
        # A process started during the level counts from zero; one that ended is in its parent's cutime.
        cpu_s = sum(max(0.0, used - start.get(member, 0.0)) for member, used in end.items())
        wall_s = max(1e-9, end_t - start_t)
        memory = tree_memory_kib(end)
        return {
            "cpu_seconds": round(cpu_s, 2),
            "wall_seconds": round(wall_s, 2),
            "cpu_cores_used": round(cpu_s / wall_s, 2),
            "cpu_percent_of_machine": round(100.0 * cpu_s / wall_s / (os.cpu_count() or 1), 1),
            "processes": len(end),
            "rss_mib": round(memory.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
            "busiest_threads": busiest_threads(threads_start, threads_end, wall_s),
            "cpu_by_stage": cpu_by_stage(threads_start, threads_end, wall_s),
        }


class GpuSampler:
    """GPU utilisation (percent, mean over the GPUs) sampled from `nvidia-smi` every `interval_s`
    between `start()` and `stop()`; "n/a" where there is no nvidia-smi (no GPU)."""

    QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory used MiB), one per sample
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if shutil.which(self.QUERY[0]):
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict:
        if self._task is None:
            return {"gpu_utilisation_percent": "n/a"}
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return gpu_summary(self.samples)

    async def _run(self) -> None:
        while True:
            if (sample := await self._query()) is not None:
                self.samples.append(sample)
            await asyncio.sleep(self.interval_s)

    async def _query(self) -> tuple[float, float] | None:
        try:
            process = await asyncio.create_subprocess_exec(*self.QUERY, stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(process.communicate(), 10)
        except (OSError, TimeoutError):
            return None
        return parse_nvidia_smi(out.decode(errors="replace"))


def parse_nvidia_smi(text: str) -> tuple[float, float] | None:
    """`utilization.gpu, memory.used` lines (one per GPU) -> (mean utilisation %, total MiB used)."""
    rows = []
    for line in text.strip().splitlines():
        try:
            utilisation, memory = (float(part) for part in line.split(","))
        except ValueError:
            continue  # "[N/A]" or a warning line
        rows.append((utilisation, memory))
    if not rows:
        return None
    return sum(u for u, _ in rows) / len(rows), sum(m for _, m in rows)


def gpu_summary(samples: list[tuple[float, float]]) -> dict:
    if not samples:
        return {"gpu_utilisation_percent": "n/a"}
    return {"gpu_utilisation_percent": round(sum(u for u, _ in samples) / len(samples), 1),
            "gpu_utilisation_peak_percent": round(max(u for u, _ in samples), 1),
            "gpu_memory_peak_mib": round(max(m for _, m in samples)), "gpu_samples": len(samples)}


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
