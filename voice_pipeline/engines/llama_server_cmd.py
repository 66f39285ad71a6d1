"""llama.cpp's C++ `llama-server`: where its binary is, and the command line that serves our model.

`llm.serving = "server"` runs ONE `llama-server` with `--parallel N` slots: continuous batching
(every slot's next token in one decode call) and a prompt cache per slot. It is not on the package
index as a binary: scripts/build-llama-server.sh builds it from the sdist of the installed
llama-cpp-python (the same llama.cpp) and caches it; `./dev setup` calls that script when needed.

The server renders the GGUF's own chat template (ChatML for SmolLM2) with its Jinja engine, as
llama-cpp-python does in the process: the same prompt, token for token
(tests/integration/test_llama_server.py compares them).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from voice_pipeline.errors import ConfigError

ENV_BIN = "LLAMA_SERVER_BIN"  # not VP_*: a path to a built binary (scripts/gpu-sweep.sh, a carried build)
BUILD_SCRIPT = "scripts/build-llama-server.sh"


def cache_path(cuda: bool = False) -> Path:
    """Where scripts/build-llama-server.sh puts the binary for the installed llama-cpp-python."""
    version = importlib.metadata.version("llama_cpp_python") + ("-cuda" if cuda else "")
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "voice_pipeline" / "llama-server" / version / "llama-server"


def find_binary(configured: str = "") -> str:
    """`llm.server_bin`, else $LLAMA_SERVER_BIN, else the cached CUDA build, else the cached CPU build."""
    candidates = [Path(p) for p in (configured, os.environ.get(ENV_BIN, "")) if p]
    for path in candidates:
        if not os.access(path, os.X_OK):
            raise ConfigError(f"llama-server binary {path} is not an executable file")
        return str(path)
    for path in (cache_path(cuda=True), cache_path()):
        if os.access(path, os.X_OK):
            return str(path)
    raise ConfigError(f"llm.serving = 'server' needs llama.cpp's llama-server: run {BUILD_SCRIPT} "
                      f"(or ./dev setup), or set llm.server_bin")


def slot_count(llm) -> int:
    """`llm.server_slots`, or `llm.instances` when that is 0."""
    return max(1, llm.server_slots or llm.instances)


def configured_weights(llm) -> tuple[str, str]:
    """The model and adapter (or "") the settings name: the embedded SmolLM2 and the voice LoRA."""
    from voice_pipeline.engines.llama_cpp import voice_lora_path
    from voice_pipeline.engines.registry import smollm2_gguf

    return llm.model_path or smollm2_gguf(), llm.lora_path or voice_lora_path(llm.variant)


def server_argv(llm, binary: str, host: str, port: int, alias: str,
                weights: tuple[str, str] | None = None) -> list[str]:
    """One llama-server on `host:port` serving `weights` (model, adapter or ""; default: the
    configured ones) in N slots, each with `llm.n_ctx` tokens of context, on `llm.n_threads` threads."""
    model, lora = weights or configured_weights(llm)
    slots = slot_count(llm)
    threads = llm.n_threads or (os.cpu_count() or 1)
    argv = [binary, "--model", model, "--alias", alias,
            "--host", host, "--port", str(port),
            "--parallel", str(slots), "--ctx-size", str(llm.n_ctx * slots),  # split evenly over the slots
            "--threads", str(threads), "--threads-batch", str(threads),
            "--cont-batching", "--cache-prompt", "--no-webui", "--no-warmup",
            # Warnings and errors only: its info lines (per request) are noise in our log, and a
            # prompt's text is never logged at these levels (nor at info).
            "--log-verbosity", "2",
            "--kv-unified" if llm.server_kv_unified else "--no-kv-unified",
            "--cache-ram", str(llm.server_cache_ram_mib)]
    if llm.n_gpu_layers >= 0:  # else llama-server's "auto": as many layers as fit (CUDA builds only)
        argv += ["--n-gpu-layers", str(llm.n_gpu_layers)]
    if lora:
        argv += ["--lora", lora]
    return argv
