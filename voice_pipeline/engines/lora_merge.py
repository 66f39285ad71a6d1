"""The voice LoRA merged into the model's weights, for a llama-server on a GPU.

llama.cpp applies a LoRA at run time as extra operators beside each weight it adapts: for the voice
LoRA (7 matrices in each of SmolLM2's 30 layers) about as many GPU kernels again per decode step as
the model itself has. On a GPU serving many slots a step costs mostly kernel launches, not
arithmetic, so those kernels nearly double it (docs/scaling.md). llama.cpp's own
`llama-export-lora` (built beside llama-server by scripts/build-llama-server.sh) writes a model
whose adapted matrices are `W + scale * B A`, dequantized to F16 (the others are copied as they
are): the same function as the model plus the LoRA, up to F16 rounding, in one matrix each. It
costs more memory bandwidth per token than the 4-bit original, which is why the CPU keeps the
adapter (`llm.server_merge_lora` = "auto": merged only when the server has a GPU).

The merged file is made once and cached under ~/.cache/voice_pipeline/merged/, named after the
two inputs' sizes and times (a new adapter or model makes a new file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from pathlib import Path

from voice_pipeline.app.settings import switch_on
from voice_pipeline.errors import ConfigError

log = logging.getLogger("voice_pipeline.engines.lora_merge")
TOOL = "llama-export-lora"
MERGE_TIMEOUT_S = 600.0


def export_tool(server_bin: str) -> str:
    """llama-export-lora beside the llama-server binary, or "" when it is not there."""
    tool = Path(server_bin).with_name(TOOL)
    return str(tool) if os.access(tool, os.X_OK) else ""


def server_devices(server_bin: str) -> list[str]:
    """The GPUs (and other accelerators) this llama-server build sees (`--list-devices`)."""
    try:
        listed = subprocess.run([server_bin, "--list-devices"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("llama-server --list-devices failed (%s): taken as no GPU", exc)
        return []
    lines = listed.stdout.split("Available devices:", 1)[-1].splitlines()
    return [line.strip() for line in lines if line.strip() and line.strip() != "(none)"]


def merged_path(model: str, lora: str, cache_root: Path | None = None) -> Path:
    """Where the merge of `model` and `lora` is cached: named by both files' names, sizes and times."""
    key = hashlib.sha1()
    for path in (model, lora):
        stat = os.stat(path)
        key.update(f"{os.path.abspath(path)}:{stat.st_size}:{int(stat.st_mtime)};".encode())
    root = cache_root or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voice_pipeline"
    return root / "merged" / f"{Path(model).stem}+{Path(lora).stem}-{key.hexdigest()[:12]}.gguf"


def merge(model: str, lora: str, tool: str, threads: int = 0, cache_root: Path | None = None) -> str:
    """The cached merge of `lora` into `model`, made now with `tool` if it is not there yet."""
    target = merged_path(model, lora, cache_root)
    if target.is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".tmp{os.getpid()}")
    argv = [tool, "-m", model, "--lora", lora, "-o", str(partial), "-t", str(threads or os.cpu_count() or 1)]
    start = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=MERGE_TIMEOUT_S)
        if done.returncode != 0 or not partial.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ConfigError(f"{TOOL} failed ({done.returncode}): {' | '.join(tail)}")
        os.replace(partial, target)  # atomic: another process sees all of it or none
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{TOOL} took over {MERGE_TIMEOUT_S:.0f} s") from None
    finally:
        partial.unlink(missing_ok=True)
    log.info("voice LoRA merged into the model in %.1f s: %s", time.monotonic() - start, target)
    return str(target)


def served_weights(llm, server_bin: str, model: str, lora: str) -> tuple[str, str]:
    """The (model, lora) llama-server loads: `model` with `lora` merged in when
    `llm.server_merge_lora` says so ("auto": when the server offloads layers to a GPU), else as
    given. "auto" without the merge tool, or with a merge that failed, keeps the adapter (logged)."""
    if not lora:
        return model, lora
    auto = str(llm.server_merge_lora).lower() == "auto"
    if auto:
        devices = server_devices(server_bin) if llm.n_gpu_layers != 0 else []
        wanted = bool(devices)
        log.info("llama-server devices: %s; voice LoRA %s", ", ".join(devices) or "none",
                 "merged into the model" if wanted else "applied at run time")
    else:
        try:
            wanted = switch_on(llm.server_merge_lora, auto=False)
        except ConfigError as exc:
            raise ConfigError(f"llm.server_merge_lora: {exc}") from None
    if not wanted:
        return model, lora
    tool = export_tool(server_bin)
    if not tool:
        message = f"no {TOOL} beside {server_bin} (scripts/build-llama-server.sh builds both)"
        if not auto:
            raise ConfigError(f"llm.server_merge_lora = on: {message}")
        log.warning("%s: the voice LoRA is applied at run time", message)
        return model, lora
    try:
        return merge(model, lora, tool, llm.n_threads), ""
    except ConfigError as exc:
        if not auto:
            raise
        log.warning("%s: the voice LoRA is applied at run time", exc)
        return model, lora
