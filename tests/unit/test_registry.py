"""Model locations: embedded packages, and the split `base` whisper model joined once."""

from pathlib import Path

import pytest

from voice_pipeline.engines import registry


def make_parts(tmp_path: Path) -> list[Path]:
    one, two = tmp_path / "p1", tmp_path / "p2"
    one.mkdir()
    two.mkdir()
    (one / "model.bin.part1").write_bytes(b"A" * 1000)
    (two / "model.bin.part2").write_bytes(b"B" * 500)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (two / name).write_text(name)
    return [one, two]


def test_split_model_is_joined_in_order_and_only_once(tmp_path):
    parts = make_parts(tmp_path)
    target = registry.join_split_model(parts, tmp_path / "joined")
    model = target / "model.bin"
    assert model.read_bytes() == b"A" * 1000 + b"B" * 500
    assert (target / "tokenizer.json").read_text() == "tokenizer.json"
    first_mtime = model.stat().st_mtime_ns
    registry.join_split_model(parts, target)
    assert model.stat().st_mtime_ns == first_mtime
    assert [p.name for p in target.iterdir() if p.name.startswith("tmp")] == []


def test_a_truncated_join_is_redone(tmp_path):
    parts = make_parts(tmp_path)
    target = tmp_path / "joined"
    target.mkdir()
    (target / "model.bin").write_bytes(b"A" * 10)
    registry.join_split_model(parts, target)
    assert (target / "model.bin").stat().st_size == 1500


def test_missing_small_files_are_named(tmp_path):
    parts = make_parts(tmp_path)
    (parts[1] / "vocabulary.json").unlink()
    with pytest.raises(FileNotFoundError, match="vocabulary.json"):
        registry.join_split_model(parts, tmp_path / "joined")


def test_embedded_models_come_from_installed_packages():
    assert Path(registry.whisper_model_dir("tiny.en"), "model.bin").exists()
    assert Path(registry.smollm2_gguf()).exists()
    onnx, config = registry.piper_voice("en_US-joe-medium")
    assert Path(onnx).exists() and Path(config).exists()
    with pytest.raises(FileNotFoundError):
        registry.whisper_model_dir("/no/such/model")
