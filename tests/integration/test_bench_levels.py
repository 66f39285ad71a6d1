"""`voice-pipeline bench --levels 1,2 --full-replies`: only the given concurrency levels are
played, each reply is awaited to its end (not cut after its first audio), and the report says so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_levels_with_full_replies(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "voice_pipeline.app.cli", "bench", "--levels", "1,2", "--full-replies",
         "--items", "2", "--items-per-session", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["configuration"]["run"]["levels"] == [1, 2] and report["configuration"]["run"]["full_replies"]
    assert report["configuration"]["method"]["reply"].startswith("each whole reply is awaited")
    samples = report["samples"]
    assert {s["system"] for s in samples} == {"pipeline"}, "no baselines, no comparisons"
    assert sorted(s["concurrency"] for s in samples) == [1, 2, 2]
    assert all(s["status"] == "ok" and s["reply_text"] for s in samples)
    assert all(s["voice_to_voice_ms"] is not None for s in samples)
    assert all(s["reply_status"] == "completed" for s in samples), "whole replies: none was cancelled"
    levels = report["summary"]["concurrency"]["levels"]
    assert [lv["sessions"] for lv in levels] == [1, 2]
    # Every whole reply's playback was followed (stalls or none); the levels count them.
    assert all(isinstance(s["playback_gaps_ms"], list) for s in samples)
    assert [lv["playback_stalls"]["turns_measured"] for lv in levels] == [1, 2]
    assert "playback stalls" in (tmp_path / "report.md").read_text()
