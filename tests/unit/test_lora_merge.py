"""When `serve` merges the voice LoRA into the model for llama-server (engines/lora_merge.py), with
stand-in executables for llama-server (`--list-devices`) and llama-export-lora; the real tool's
merge is tests/integration/test_lora_merge.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from voice_pipeline.app.settings import LlmSettings
from voice_pipeline.engines.llama_server_cmd import server_argv
from voice_pipeline.engines.lora_merge import merged_path, served_weights
from voice_pipeline.errors import ConfigError


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """A llama-server that lists `$DEVICES`, a llama-export-lora that counts its runs and writes
    its -o file (or fails with `$MERGE_FAILS`), a model and an adapter."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    server = _script(tmp_path / "llama-server", 'echo "Available devices:"; echo "${DEVICES:-  (none)}"\n')
    _script(tmp_path / "llama-export-lora",
            f'echo run >> {runs}\n[ -n "$MERGE_FAILS" ] && {{ echo "error: bad adapter" >&2; exit 1; }}\n'
            'while [ $# -gt 0 ]; do [ "$1" = -o ] && echo merged > "$2"; shift; done\n')
    (tmp_path / "model.gguf").write_bytes(b"model")
    (tmp_path / "lora.gguf").write_bytes(b"lora")

    def count() -> int:
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    return server, str(tmp_path / "model.gguf"), str(tmp_path / "lora.gguf"), count


def test_auto_merges_once_when_the_server_sees_a_gpu_and_caches_the_merge(tools, monkeypatch):
    server, model, lora, runs = tools
    monkeypatch.setenv("DEVICES", "  CUDA0: NVIDIA H200 (143000 MiB, 142000 MiB free)")
    llm = LlmSettings(serving="server")
    merged, adapter = served_weights(llm, server, model, lora)
    assert adapter == "" and merged == str(merged_path(model, lora)) and Path(merged).read_text() == "merged\n"
    assert served_weights(llm, server, model, lora) == (merged, "") and runs() == 1, "made once, then cached"
    argv = server_argv(llm, server, "127.0.0.1", 1, "local", (merged, adapter))
    assert argv[argv.index("--model") + 1] == merged and "--lora" not in argv


def test_auto_keeps_the_adapter_on_the_cpu_or_with_no_layers_offloaded(tools, monkeypatch):
    server, model, lora, runs = tools
    assert served_weights(LlmSettings(serving="server"), server, model, lora) == (model, lora)
    monkeypatch.setenv("DEVICES", "  CUDA0: NVIDIA H200")
    assert served_weights(LlmSettings(serving="server", n_gpu_layers=0), server, model, lora) == (model, lora)
    assert served_weights(LlmSettings(serving="server", server_merge_lora="off"), server, model, lora) == (model, lora)
    assert served_weights(LlmSettings(serving="server"), server, model, "") == (model, ""), "nothing to merge"
    assert runs() == 0


def test_on_merges_on_the_cpu_too_and_a_new_adapter_makes_a_new_merge(tools, tmp_path):
    server, model, lora, runs = tools
    first = served_weights(LlmSettings(serving="server", server_merge_lora="on"), server, model, lora)[0]
    (tmp_path / "lora.gguf").write_bytes(b"a longer, retrained adapter")
    second = served_weights(LlmSettings(serving="server", server_merge_lora="on"), server, model, lora)[0]
    assert first != second and runs() == 2


def test_a_failed_or_impossible_merge_keeps_the_adapter_under_auto_and_is_an_error_under_on(
        tools, tmp_path, monkeypatch, caplog):
    server, model, lora, runs = tools
    monkeypatch.setenv("DEVICES", "  CUDA0: NVIDIA H200")
    monkeypatch.setenv("MERGE_FAILS", "1")
    with caplog.at_level(logging.WARNING, logger="voice_pipeline.engines.lora_merge"):
        assert served_weights(LlmSettings(serving="server"), server, model, lora) == (model, lora)
    assert "bad adapter" in caplog.text
    assert not list((tmp_path / "cache").rglob("*.tmp*")), "no partial merge left behind"
    with pytest.raises(ConfigError, match="bad adapter"):
        served_weights(LlmSettings(serving="server", server_merge_lora="on"), server, model, lora)
    (tmp_path / "llama-export-lora").unlink()
    assert served_weights(LlmSettings(serving="server"), server, model, lora) == (model, lora)
    with pytest.raises(ConfigError, match="build-llama-server.sh"):
        served_weights(LlmSettings(serving="server", server_merge_lora="on"), server, model, lora)
    with pytest.raises(ConfigError, match="server_merge_lora"):
        served_weights(LlmSettings(serving="server", server_merge_lora="sometimes"), server, model, lora)
