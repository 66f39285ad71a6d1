"""One llama.cpp server for every peer: llama-cpp-python's own OpenAI-compatible server.

It serves the pipeline's SmolLM2 GGUF under two names: `smollm2` (the GGUF as shipped) and
`smollm2-voice-lora` (with the project's voice LoRA), with the thread counts this pipeline uses.
llama-cpp-python keeps one of them loaded and swaps on a request for the other; each peer warms
its own name up before it is measured. The server runs with this project's interpreter (the
`[server]` extra's packages are in the test extras).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from voice_pipeline.engines.registry import VOICE_LORA_PATH, smollm2_gguf
from voice_pipeline.bench.procstat import stop_process

BASE_ALIAS = "smollm2"
LORA_ALIAS = "smollm2-voice-lora"
_POLL_S = 0.1


def model_config(threads: int, n_ctx: int = 2048) -> list[dict]:
    common = {"model": smollm2_gguf(), "n_threads": threads, "n_threads_batch": threads, "n_ctx": n_ctx,
              "n_gpu_layers": 0, "verbose": False}
    return [{**common, "model_alias": BASE_ALIAS},
            {**common, "model_alias": LORA_ALIAS, "lora_path": str(VOICE_LORA_PATH)}]


class LlamaServer:
    def __init__(self, log_dir: Path, threads: int = 0, ready_timeout_s: float = 120.0) -> None:
        self.threads = threads or (os.cpu_count() or 1)  # as the pipeline: 0 -> all cores
        self.log_path = log_dir / "llama-server.log"
        self.ready_timeout_s = ready_timeout_s
        self.url = ""
        self.pid: int | None = None
        self._process: subprocess.Popen | None = None

    async def start(self) -> dict:
        from voice_pipeline.bench.server_system import free_port

        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        config_path = self.log_path.with_name("llama-server.json")
        config_path.write_text(json.dumps({"host": "127.0.0.1", "port": port,
                                           "models": model_config(self.threads)}, indent=1))
        started_t = time.monotonic()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)],
                                             stdout=log, stderr=subprocess.STDOUT)
        self.pid = self._process.pid
        self.url = f"http://127.0.0.1:{port}/v1"
        await self._wait_ready(started_t)
        return {"process_to_ready_ms": round(1000 * (time.monotonic() - started_t), 1), "threads": self.threads}

    async def _wait_ready(self, started_t: float) -> None:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - started_t < self.ready_timeout_s:
                if self._process.poll() is not None:
                    raise RuntimeError(f"llama.cpp server exited: {self.log_path.read_text(errors='replace')[-2000:]}")
                try:
                    async with http.get(self.url + "/models") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(_POLL_S)
        raise TimeoutError(f"llama.cpp server not ready after {self.ready_timeout_s} s")

    async def warm(self, alias: str, system_prompt: str) -> float:
        """One short completion on `alias` (loads it if the other one was loaded, and leaves the system
        prompt in llama.cpp's KV cache, as this pipeline evaluates it at start-up); its time in ms."""
        started_t = time.monotonic()
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hello."}]
        body = {"model": alias, "messages": messages, "max_tokens": 4}
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url + "/chat/completions", json=body) as response:
                response.raise_for_status()
                await response.read()
        return round(1000 * (time.monotonic() - started_t), 1)

    async def close(self) -> None:
        await stop_process(self._process)
