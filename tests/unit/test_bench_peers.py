"""The peer adapters' bench side without a peer: scoring, sanity checks, same models, pinned venvs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np

from voice_pipeline.app.settings import Settings
from voice_pipeline.bench.peers import PEER_GROUPS, PIPECAT_LINES, make_peer
from voice_pipeline.bench.peers.llm_server import BASE_ALIAS, LORA_ALIAS, model_config
from voice_pipeline.bench.peers.pipecat_system import DRIVER, Heard, score
from voice_pipeline.bench.peers.report import markdown
from voice_pipeline.bench.peers.run import summarize_system
from voice_pipeline.bench.peers.venv import PIPECAT, PeerRequirements
from voice_pipeline.bench.systems import SYSTEMS, BenchOptions, TurnSample
from voice_pipeline.engines.registry import VOICE_LORA_PATH, piper_voice, smollm2_gguf, whisper_model_dir

LOUD = (np.sin(np.arange(22_050) / 5.0) * 8000).astype("<i2").tobytes()


def sample() -> TurnSample:
    return TurnSample("pipecat", "q01", 1, 0, "What is the capital of France?")


def heard(audio: bytes = LOUD, transcript: str = "What is the capital of France?", audio_t: float = 10.5) -> Heard:
    out = Heard(22_050)
    out.events = [(10.2, {"type": "vad_stopped"}), (10.3, {"type": "user_stopped"}),
                  (10.3, {"type": "transcript", "text": transcript}),
                  (10.4, {"type": "llm_text", "text": "Paris"}), (10.45, {"type": "tts_first_audio"}),
                  (10.46, {"type": "metrics", "data": [{"kind": "TTFBMetricsData", "processor": "OpenAILLMService#0",
                                                        "value": 0.09}]}),
                  (10.6, {"type": "llm_end"})]
    out.audio = [(audio_t, audio)]
    return out


def test_an_answered_item_is_timed_from_the_end_of_speech_on_the_bench_clock():
    s = sample()
    score(s, heard(), speech_start_t=8.0, speech_end_t=10.0)
    assert s.status == "ok" and s.voice_to_voice_ms == 500.0
    assert s.transcript == "What is the capital of France?" and s.reply_text == "Paris"
    assert s.marks_ms["endpoint"] <= s.marks_ms["llm_first_token"] <= s.marks_ms["first_audio_sent"]
    assert s.stages_ms == {"OpenAILLMService.ttfb": 90.0}


def test_a_broken_peer_is_failed_not_timed():
    cases = {"no_transcript": heard(transcript=""), "silent_reply": heard(audio=bytes(44_100)),
             "spoke_over_user": heard(audio_t=9.5)}
    for status, what in cases.items():
        s = sample()
        score(s, what, speech_start_t=8.0, speech_end_t=10.0)
        assert (s.status, s.voice_to_voice_ms) == (status, None), status
    empty = Heard(22_050)
    s = sample()
    score(s, empty, 8.0, 10.0)
    assert (s.status, s.voice_to_voice_ms) == ("no_transcript", None)
    s = sample()
    s.status = "timeout"
    score(s, heard(), 8.0, 10.0)
    assert (s.status, s.voice_to_voice_ms) == ("timeout", None)


def test_an_item_is_done_after_the_reply_text_and_some_audio():
    h = heard()
    assert h.done()
    h.events = [e for e in h.events if e[1]["type"] != "llm_end"]
    assert not h.done()


def test_peers_are_registered_as_systems():
    assert set(PEER_GROUPS["pipecat"]) == set(PIPECAT_LINES) <= set(SYSTEMS)
    assert "pipeline_base_llm" in SYSTEMS
    assert PEER_GROUPS["livekit"] == ()


def test_every_peer_gets_this_pipelines_models(tmp_path, monkeypatch):
    monkeypatch.setenv("VP_CACHE_DIR", str(tmp_path))
    settings = Settings.load(environ={})

    class Llm:
        url = "http://127.0.0.1:1/v1"

    for name, (_, turn, matched, lora) in PIPECAT_LINES.items():
        system = make_peer(name, BenchOptions(log_dir=str(tmp_path)), llm=Llm())
        config = system.driver_config(settings)
        assert config["whisper_dir"] == whisper_model_dir(settings.stt.model)
        assert config["compute_type"] == "int8"
        assert (config["piper_model"], config["piper_config"]) == piper_voice(settings.tts.voice)
        voice_file = Path(config["piper_dir"]) / f"{config['voice']}.onnx"
        assert voice_file.resolve() == Path(config["piper_model"]).resolve()  # Pipecat finds it: no download
        assert config["llm_model"] == (LORA_ALIAS if lora else BASE_ALIAS)
        assert config["turn"] == turn
        assert (config["beam_size"] == settings.stt.beam_size) is matched
        json.dumps(config)
    models = {m["model_alias"]: m for m in model_config(threads=2)}
    assert {m["model"] for m in models.values()} == {smollm2_gguf()}
    assert models[LORA_ALIAS]["lora_path"] == str(VOICE_LORA_PATH) and "lora_path" not in models[BASE_ALIAS]
    assert {(m["n_threads"], m["n_threads_batch"]) for m in models.values()} == {(2, 2)}


def test_the_driver_imports_nothing_from_this_project():
    tree = ast.parse(DRIVER.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in modules if m and m.startswith("voice_pipeline")]
    assert any(m.startswith("pipecat.") for m in modules if m)


def test_venvs_are_pinned_and_named_after_their_pins():
    assert PIPECAT.requirements == ("pipecat-ai[whisper,piper]==1.14.0",)
    assert all("==" in pin for pin in PIPECAT.constraints)
    assert "pipecat-ai==1.14.0" in PIPECAT.constraints
    other = PeerRequirements("pipecat", PIPECAT.requirements, PIPECAT.constraints[1:])
    assert other.digest() != PIPECAT.digest()


def test_summary_and_markdown_count_failures_apart():
    ok, bad = sample(), sample()
    score(ok, heard(), 8.0, 10.0)
    score(bad, heard(transcript=""), 8.0, 10.0)
    summary = summarize_system([ok, bad], "a peer")
    assert summary["status"] == {"ok": 1, "no_transcript": 1}
    assert summary["voice_to_voice_ms"]["count"] == 1
    report = {"machine": {"cpu_model": "cpu", "cpu_count": 2, "load_average_at_start": [0.5, 0.5, 0.5]},
              "mode": "quick", "duration_s": 1.0, "command": "voice-pipeline bench --peers pipecat",
              "configuration": {"items": [{}, {}], "not_adapted": {"livekit": "later"}},
              "summary": {"pipecat": summary}, "versions": {"peer:pipecat-ai": "1.14.0"}}
    text = markdown(report, "peers.png")
    assert "| `pipecat` | 1 / 2 |" in text and "failed: {'no_transcript': 1}" in text and "`livekit`" in text
