"""The bench's per-level load figures: each stage's share of the server-side turn time, sessions
refused by admission, CPU of the server's whole process tree, GPU utilisation from nvidia-smi
(or "n/a"), and a refusal told apart from a session that started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time

import pytest

from voice_pipeline.bench import procstat
from voice_pipeline.bench.procstat import GpuSampler, ProcessMeter, gpu_summary, parse_nvidia_smi
from voice_pipeline.bench.report import _concurrency_md
from voice_pipeline.bench.server_system import _created_or_refused
from voice_pipeline.bench.summary import STAGE_NAMES, concurrency_report, playback_stalls, stage_shares
from voice_pipeline.bench.systems import TurnSample


def _turn(status: str = "ok", concurrency: int = 4, **stages_ms: float) -> TurnSample:
    sample = TurnSample("pipeline", "q1", concurrency, 0, "reference", status=status)
    if stages_ms:
        sample.stages_ms = dict(stages_ms)
        sample.server_voice_to_voice_ms = sum(stages_ms.values())
        sample.voice_to_voice_ms = sample.server_voice_to_voice_ms + 40.0
    return sample


LEVEL = [
    _turn(endpointing=300, stt=100, llm_first_token=400, first_piece=100, tts=90, send=10),  # 1000
    _turn(endpointing=300, stt=300, llm_first_token=1200, first_piece=100, tts=90, send=10),  # 2000
    _turn("refused"),
    _turn("timeout"),
]


def test_stage_shares_add_up_over_the_answered_turns():
    shares = stage_shares(LEVEL)
    assert set(shares) == set(STAGE_NAMES)
    assert shares["llm_first_token"]["share"] == round(1600 / 3000, 3)
    assert shares["endpointing"]["share"] == 0.2 and shares["endpointing"]["p50_ms"] == 300.0
    assert shares["stt"]["p50_ms"] == 200.0  # the median of 100 and 300
    assert sum(sh["share"] for sh in shares.values()) == pytest.approx(1.0, abs=0.01)


def test_playback_stalls_count_the_turns_whose_audio_stopped_and_the_longest_stop():
    smooth, stalled, not_measured = _turn(), _turn(), _turn("refused")
    smooth.playback_gaps_ms, stalled.playback_gaps_ms = [], [120.0, 480.5]
    assert playback_stalls([smooth, stalled, not_measured]) == {"turns_measured": 2, "turns_with_stall": 1,
                                                                "longest_ms": 480.5}
    table = "\n".join(_concurrency_md(concurrency_report([smooth, stalled], {"resources": {}}, limit_ms=2500.0),
                                       {"concurrency": "c.png"}))
    assert "| 1 of 2, longest 480.5 ms |" in table


def test_a_level_with_no_answered_turn_has_no_shares():
    assert all(sh["share"] is None and sh["p50_ms"] is None for sh in stage_shares([_turn("refused")]).values())


def test_the_concurrency_report_counts_refusals_and_carries_shares_and_resources():
    resources = {"pipeline@4": {"cpu_cores_used": 1.9, "gpu_utilisation_percent": "n/a"}}
    report = concurrency_report(LEVEL, {"resources": resources}, limit_ms=2500.0)
    (level,) = report["levels"]
    assert level["refused"] == 1 and level["status"] == {"ok": 2, "refused": 1, "timeout": 1}
    assert level["stage_shares"]["llm_first_token"]["share"] > level["stage_shares"]["stt"]["share"]
    assert level["server_voice_to_voice_ms"]["count"] == 2
    assert report["max_sessions_within_limit"] == 0, "a level with refusals is not within the limit"
    table = "\n".join(_concurrency_md(report, {"concurrency": "c.png"}))
    assert "| refused | playback stalls |" in table and "| 1 | n/a | 1.9 | n/a |" in table  # no full replies here
    assert "| 4 | 1500.0 | 20 % (300.0) |" in table  # the shares table: server p50, then endpointing


def test_nvidia_smi_lines_are_averaged_over_gpus_and_samples():
    assert parse_nvidia_smi("40, 1000\n80, 3000\n") == (60.0, 4000.0)
    assert parse_nvidia_smi("[N/A], [N/A]\n") is None
    summary = gpu_summary([(60.0, 4000.0), (20.0, 5000.0)])
    assert summary["gpu_utilisation_percent"] == 40.0 and summary["gpu_utilisation_peak_percent"] == 60.0
    assert summary["gpu_memory_peak_mib"] == 5000 and summary["gpu_samples"] == 2
    assert gpu_summary([]) == {"gpu_utilisation_percent": "n/a"}


async def test_without_nvidia_smi_gpu_utilisation_is_not_available(monkeypatch):
    monkeypatch.setattr(procstat.shutil, "which", lambda _name: None)
    sampler = GpuSampler()
    sampler.start()
    assert await sampler.stop() == {"gpu_utilisation_percent": "n/a"}


async def test_the_gpu_sampler_reads_nvidia_smi_while_the_level_runs(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '30, 1000'\necho '50, 2000'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sampler = GpuSampler(interval_s=0.01)
    sampler.start()
    for _ in range(500):
        if sampler.samples:
            break
        await asyncio.sleep(0.01)
    summary = await sampler.stop()
    assert summary["gpu_utilisation_percent"] == 40.0 and summary["gpu_memory_peak_mib"] == 3000


def test_the_cpu_of_a_child_process_counts_as_the_servers():
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    parent = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -c '{spin}'; sleep 30"])
    try:
        meter = ProcessMeter(parent.pid)
        meter.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(procstat.tree_cpu_s(parent.pid).values()) < 0.3:
            time.sleep(0.05)
        resources = meter.stop()
        assert resources["cpu_seconds"] > 0, "the idle shell's busy child was counted"
        assert resources["processes"] >= 1 and resources["cpu_cores_used"] > 0
    finally:
        parent.kill()
        parent.wait()


@contextlib.contextmanager
def threads_burning(*burns: tuple[str, float]):
    """A child process whose threads, each named as given, burn that many CPU seconds and then sleep;
    yields ProcessMeter's reading over the burn."""
    spin = ("import ast, sys, threading, time\n"
            "from voice_pipeline.threads import name_native_thread\n"
            "def burn(name, seconds):\n    name_native_thread(name)\n    end = time.thread_time() + seconds\n"
            "    while time.thread_time() < end: pass\n    time.sleep(30)\n"
            "for name, seconds in ast.literal_eval(sys.argv[1]):\n"
            "    threading.Thread(target=burn, args=(name, seconds)).start()\n"
            "time.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", spin, repr(burns)])
    try:
        meter = ProcessMeter(child.pid)
        meter.start()
        deadline, total = time.monotonic() + 30, sum(seconds for _, seconds in burns)
        while time.monotonic() < deadline and sum(procstat.thread_cpu_s([child.pid]).values()) < total:
            time.sleep(0.05)
        yield child.pid, meter.stop()
    finally:
        child.kill()
        child.wait()


def test_the_busiest_thread_is_the_one_spinning_not_its_idle_main_thread():
    with threads_burning(("burner", 0.4)) as (pid, resources):
        top, *_ = resources["busiest_threads"]
    assert top["pid"] == pid and not top["main_thread"] and top["cores"] > 0
    assert top["thread"] == "burner", "the thread's own name, as the pipeline's pools set theirs"
    assert procstat.busiest_summary({"busiest_threads": [top]}).startswith(f"{top['cores']} cores (")
    assert procstat.busiest_summary({"busiest_threads": [top]}).endswith(", burner)")
    assert procstat.busiest_summary({}) == "n/a"


class _Received:
    def __init__(self, events: list[dict]) -> None:
        self.events = events

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("type") == kind]


class _Client:
    def __init__(self, *events: dict) -> None:
        self.received = _Received(list(events))


def test_a_refused_session_is_told_apart_from_a_started_one():
    busy = {"type": "error", "error": {"code": "server_busy", "message": "the server is at its measured capacity"}}
    assert _created_or_refused(_Client(busy)) == "server_busy: the server is at its measured capacity"
    assert _created_or_refused(_Client({"type": "session.created", "session": {}})) == ""
    assert _created_or_refused(_Client({"type": "error", "error": {"code": "invalid_json"}})) is None  # not a refusal
    assert _created_or_refused(_Client()) is None  # nothing yet: keep waiting


def test_each_thread_s_cpu_counts_for_its_stage_by_name():
    stage = procstat.thread_stage
    assert stage("pipeline worker", True, "python") == "event loop"
    assert stage("voice-pipeline serve", True, "python") == "other"  # the supervisor
    assert stage("llama-server", False, "llama-server") == "llm"
    assert [stage("pipeline worker", False, name) for name in
            ("stt-batch_0", "stt-native_0", "llm_1", "llm-later_0", "tts_0", "tts-later-ort_0", "vad-batch",
             "eot-native_0", "eot_0", "asyncio_0", "python")] == [
        "stt", "stt", "llm", "llm", "tts", "tts", "vad", "end of turn", "end of turn", "other", "other"]


def test_cpu_by_stage_sums_the_threads_of_a_stage():
    with threads_burning(("stt-native_0", 0.2), ("stt-batch_0", 0.2), ("tts_0", 0.2)) as (_, resources):
        stages = resources["cpu_by_stage"]
    assert list(stages)[:2] == ["stt", "tts"] and stages["stt"] > stages["tts"] > 0, stages
    assert procstat.stages_summary({"cpu_by_stage": stages}).startswith(f"stt {stages['stt']} · tts ")
    assert procstat.stages_summary({}) == "n/a"
