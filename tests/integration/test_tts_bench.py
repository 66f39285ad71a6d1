"""scripts/tts_bench.py: the TTS engine alone, N first pieces at once, over one or more processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str, **env: str) -> tuple[list[dict], str]:
    out = tmp_path / "tts.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "tts_bench.py"), *args, "--rounds", "1",
                           "--out", str(out)], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())["levels"], done.stdout


def test_levels_are_spread_over_the_processes_and_timed(tmp_path):
    levels, stdout = _bench(tmp_path, "--levels", "1,3", "--processes", "1,2")
    assert [(level["processes"], level["pieces_at_once"]) for level in levels] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for level in levels:
        first, last = level["first_audio_ms"], level["last_audio_ms"]
        assert first["count"] == last["count"] == level["pieces_at_once"]  # every piece spoke
        assert first["p50"] <= last["p50"] and level["audio_s_per_s"] > 0 and level["cpu_ms_per_piece"] > 0
        assert level["batched"] is False and level["rows_per_call"] is None  # the CPU's default: no batching
    assert "P=2 N=3: first audio p50" in stdout


def test_with_batching_it_counts_rows_per_model_call(tmp_path):
    levels, _ = _bench(tmp_path, "--levels", "4", VP_TTS_BATCH="on", VP_TTS_BATCH_MAX="8")
    assert levels[0]["batched"] is True and levels[0]["first_audio_ms"]["count"] == 4
    assert 1.0 <= levels[0]["rows_per_call"] <= 4.0
