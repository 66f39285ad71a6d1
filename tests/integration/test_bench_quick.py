"""`voice-pipeline bench --quick` end to end: the report is complete and sane (no timing thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voice_pipeline.bench.corpus import Corpus
from voice_pipeline.bench.summary import MARK_NAMES, STAGE_NAMES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
SUMMARY_KEYS = {"p50", "p95", "p99", "min", "max", "count"}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "voice_pipeline.app.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Concurrent sessions" in done.stdout
    return out


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict:
    return json.loads((report_dir / "report.json").read_text())


def assert_sane(summary: dict, expect_some: bool = False) -> None:
    assert SUMMARY_KEYS <= set(summary)
    if summary["count"] == 0:
        assert not expect_some
        return
    ordered = [summary[k] for k in ("min", "p50", "p95", "p99", "max")]
    assert ordered == sorted(ordered), summary


def test_report_has_every_section(report: dict, report_dir: Path) -> None:
    assert {"schema", "mode", "machine", "versions", "configuration", "samples", "phases", "summary", "command"} <= set(report)
    assert report["mode"] == "quick"
    assert report["machine"]["cpu_count"] >= 1
    assert report["versions"]["faster-whisper"]
    summary = report["summary"]
    assert {"pipeline", "stt_wer", "llm_tokens_per_s", "tts_real_time_factor", "cold_start", "concurrency",
            "baselines"} <= set(summary)
    for name in ("report.md", "cdf_stages.png", "concurrency.png", "baselines.png"):
        assert (report_dir / name).stat().st_size > 0
    assert (report_dir / "cdf_stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_counts_match_the_configuration(report: dict) -> None:
    corpus = Corpus.load()
    samples = report["samples"]
    n1 = [s for s in samples if s["system"] == "pipeline" and s["concurrency"] == 1]
    assert sorted(s["item_id"] for s in n1) == sorted(corpus.quick_ids)
    assert sum(1 for s in n1 if s["first_turn_after_ready"]) == 1
    run = report["configuration"]["run"]
    levels = report["summary"]["concurrency"]["levels"]
    assert [lv["sessions"] for lv in levels][:2] == [1, 2]
    for level in levels:
        turns = [s for s in samples if s["system"] == "pipeline" and s["concurrency"] == level["sessions"]]
        expected = len(corpus.quick_ids) if level["sessions"] == 1 else level["sessions"] * run["items_per_session"]
        assert level["turns"] == len(turns) == expected
    baselines = report["summary"]["baselines"]
    assert set(baselines["systems"]) == {"pipeline", *run["baselines"]}
    for name in run["baselines"]:
        assert len([s for s in samples if s["system"] == name]) == len(baselines["item_ids"]) == run["baseline_items"]


def test_each_level_is_kept_as_it_ends(report: dict, report_dir: Path) -> None:
    """levels.jsonl holds every pipeline level with its samples, written before the report."""
    lines = [json.loads(line) for line in (report_dir / "levels.jsonl").read_text().splitlines()]
    assert [line["sessions"] for line in lines] == [lv["sessions"] for lv in report["summary"]["concurrency"]["levels"]]
    for line in lines:
        assert line["system"] == "pipeline" and "cpu_cores_used" in line["resources"]
        in_report = [s for s in report["samples"] if s["system"] == "pipeline" and s["concurrency"] == line["sessions"]]
        assert line["samples"] == in_report


def test_figures_are_ordered_and_present(report: dict) -> None:
    pipeline = report["summary"]["pipeline"]
    assert pipeline["status"].get("ok", 0) >= 1
    assert_sane(pipeline["voice_to_voice_ms"], expect_some=True)
    assert set(pipeline["stages_ms"]) == set(STAGE_NAMES)
    assert set(pipeline["marks_ms"]) == set(MARK_NAMES)
    for stage in STAGE_NAMES:
        assert_sane(pipeline["stages_ms"][stage], expect_some=True)
    for mark in MARK_NAMES:
        assert_sane(pipeline["marks_ms"][mark])
    for level in report["summary"]["concurrency"]["levels"]:
        assert_sane(level["voice_to_voice_ms"])
    for system in report["summary"]["baselines"]["systems"].values():
        assert_sane(system["voice_to_voice_ms"])
    assert_sane(report["summary"]["tts_real_time_factor"], expect_some=True)


def test_ok_turns_carry_their_marks_in_order(report: dict) -> None:
    for sample in report["samples"]:
        marks = sample["marks_ms"]
        if sample["status"] == "stt_fallback":  # the server's apology when STT missed its budget
            assert sample["voice_to_voice_ms"] is not None and "stt_final" not in marks
        if sample["status"] != "ok" or sample["system"] == "naive":
            continue
        assert sample["voice_to_voice_ms"] is not None
        # The final transcript may come before the endpoint (the final pass starts at the pause and the
        # endpoint waits for the end-of-turn score), but the critical path is ordered and no audio
        # goes out before the endpoint.
        assert marks["stt_final"] <= marks["llm_first_token"] <= marks["tts_first_audio"] <= marks["first_audio_sent"]
        assert marks["endpoint"] <= marks["first_audio_sent"]


def test_wer_cold_start_and_resources(report: dict) -> None:
    summary = report["summary"]
    wer = summary["stt_wer"]
    assert 0.0 <= wer["wer"] <= 1.0
    assert wer["utterances"] == len(Corpus.load().quick_ids)
    assert set(wer["by_engine"]) == {"piper", "espeak"}
    cold = summary["cold_start"]
    assert cold["process_to_ready_ms"] > 0
    assert {"stt_load_ms", "llm_load_ms", "tts_load_ms"} <= set(cold["server_reported"])
    assert cold["first_turn_after_ready"]["item_id"] == Corpus.load().quick_ids[0]
    resources = summary["pipeline"]["resources"]
    assert resources["peak_rss_mib"] >= resources["rss_mib"] > 0
    assert resources["cpu_seconds"] > 0
    assert summary["concurrency"]["sessions_per_core_at_limit"] >= 0
