"""`voice-pipeline bench --peers pipecat --quick`: every peer adapter still runs and answers (no figures).

The first run on a machine installs Pipecat into its own venv under the bench's cache (about 35 s
from PyPI on 2 cores, less from pip's wheel cache); later runs reuse it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voice_pipeline.bench.peers import PEER_GROUPS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("peers")
    done = subprocess.run(
        [sys.executable, "-m", "voice_pipeline.app.cli", "bench", "--peers", "pipecat", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert "## Peers: the same items" in done.stdout
    return out


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict:
    return json.loads((report_dir / "peers.json").read_text())


def test_every_pipecat_line_answered_every_item(report: dict):
    items = [i["id"] for i in report["configuration"]["items"]]
    assert len(items) == 2
    assert set(report["summary"]) == set(PEER_GROUPS["pipecat"])
    for name in PEER_GROUPS["pipecat"]:
        samples = [s for s in report["samples"] if s["system"] == name]
        assert [s["item_id"] for s in samples] == items
        for s in samples:
            assert s["status"] == "ok", s
            assert s["transcript"].strip() and s["reply_text"].strip(), s
            assert s["voice_to_voice_ms"] is not None and s["marks_ms"]["first_audio_sent"] == s["voice_to_voice_ms"]
            marks = s["marks_ms"]
            assert marks["endpoint"] <= marks["first_audio_sent"] and marks["llm_first_token"] <= marks["first_audio_sent"]
            assert any(k.startswith("WhisperSTTService.") for k in s["stages_ms"]), s["stages_ms"]
            assert any(k.startswith("OpenAILLMService.") for k in s["stages_ms"]), s["stages_ms"]


def test_the_run_records_how_it_was_made(report: dict, report_dir: Path):
    cold = report["cold_start"]
    assert cold["llama_server"]["threads"] >= 1
    for name in PEER_GROUPS["pipecat"]:
        assert cold[name]["versions"]["pipecat-ai"] == "1.14.0"
        assert cold[name]["install"]["requirements"] == ["pipecat-ai[whisper,piper]==1.14.0"]
        assert cold[name]["process_to_ready_ms"] > 0
    assert report["summary"]["pipecat"]["stages_ms"]
    assert any(k.endswith(".turn_e2e") for k in report["summary"]["pipecat"]["stages_ms"])  # Smart Turn ran
    assert (report_dir / "peers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (report_dir / "peers.md").stat().st_size > 0
