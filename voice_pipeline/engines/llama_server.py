"""The LLM as llama.cpp servers in child processes: started, watched, restarted, and used as slots.

`llm.serving = "server"` runs ONE llama.cpp C++ `llama-server` child with `--parallel N` slots
(continuous batching, a prompt cache per slot; engines/llama_server_cmd.py), every slot warmed with
the system prompt (`id_slot`), and sends it every reply at once: it queues what its slots cannot
take yet. A crash loses the replies in flight on it (they fail over to the cascade's apology).

`llm.serving = "child"` runs the model in `python -m llama_cpp.server` (llama-cpp-python's own
OpenAI-compatible server) on loopback instead of inside the pipeline's process, so a native crash
there costs a restart of that server, not every session. What that server really does (read in
llama_cpp/server/app.py, 0.3.x): one `Llama` per process behind a global lock, so it generates
**one reply at a time**, with no continuous batching and no parallel slots; it keeps the tokens it
last evaluated, so a prompt that starts with the same system prompt reuses that KV prefix; and by
default (`interrupt_requests`) a waiting request *ends the stream in progress with [DONE]*, a reply
silently cut short. So each slot here is one server process (`llm.instances` of them, like the
in-process contexts), started with `interrupt_requests` off, and `SlotsLlm` sends each reply to
the slot with the fewest replies in flight. vLLM, SGLang or a remote llama-server (continuous
batching) plug in with `llm.serving = "url"` through the same client.

`ModelServers` owns the processes: a watcher thread starts a dead one again after a short backoff.
`python -m voice_pipeline.engines.llama_server --port P` runs servers shared by several workers
(`VP_LLM_SERVING=server`: one llama-server on P).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from contextlib import aclosing
import logging
import os
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import AsyncIterator, Sequence

from voice_pipeline.processes import describe_exit, die_with_parent
from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.engines.llama_server_cmd import configured_weights, find_binary, server_argv, slot_count
from voice_pipeline.engines.lora_merge import served_weights
from voice_pipeline.engines.openai_compat import OpenAICompatLLM
from voice_pipeline.errors import EngineError

log = logging.getLogger("voice_pipeline.engines.llama_server")
MODEL_ALIAS = "local"  # the name the child servers give the model
ENV_LLM_URLS = "VOICE_PIPELINE_LLM_URLS"  # not VP_*: the supervisor tells its workers where the servers are
READY_TIMEOUT_S = 120.0
BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # after crash 1, 2, 3, ... in a row
STABLE_S = 300.0  # a server that lived this long starts the backoff again
STOP_GRACE_S = 5.0


def warm_extra(slots: int, slot: int) -> dict:
    """Request fields that put a warming reply on slot `slot` of a llama-server with `slots` slots."""
    return {"id_slot": slot} if slots > 1 else {}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_config(llm, host: str, port: int) -> dict:
    """llama_cpp.server's --config_file for one slot: the model (and voice LoRA) the pipeline uses."""
    from voice_pipeline.engines.llama_cpp import voice_lora_path
    from voice_pipeline.engines.registry import smollm2_gguf

    threads = llm.threads_per_instance()  # each slot is its own server process
    model = {"model": llm.model_path or smollm2_gguf(), "model_alias": MODEL_ALIAS, "n_ctx": llm.n_ctx,
             "n_threads": threads, "n_threads_batch": threads, "n_gpu_layers": llm.n_gpu_layers, "verbose": False}
    lora = llm.lora_path or voice_lora_path(llm.variant)
    if lora:
        model["lora_path"] = lora
    return {"host": host, "port": port, "interrupt_requests": False, "models": [model]}


class ModelServers:
    """`count` llama_cpp.server children on `host`; each restarted by a watcher thread if it dies."""

    def __init__(self, llm, count: int, host: str = "127.0.0.1", ports: Sequence[int] = (),
                 system_prompt: str = "", kind: str = "child") -> None:
        """`system_prompt`: evaluated by a server started again after a crash, before it takes turns.
        `kind`: "child" (llama_cpp.server, one reply at a time) or "server" (llama-server, N slots)."""
        self.llm, self.host, self.system_prompt, self.kind = llm, host, system_prompt, kind
        self.binary = find_binary(llm.server_bin) if kind == "server" else ""
        # llama-server's model and adapter: on a GPU the voice LoRA merged into the model (once, cached)
        self.weights = served_weights(llm, self.binary, *configured_weights(llm)) if kind == "server" else None
        self.slots = slot_count(llm) if kind == "server" else 1  # replies each server generates at once
        self.ports = list(ports) or [free_port(host) for _ in range(max(1, count))]
        self.restarts = 0
        self._processes: list[subprocess.Popen | None] = [None] * len(self.ports)
        self._started_t = [0.0] * len(self.ports)
        self._dir: Path | None = None  # llama_cpp.server's config files; removed by stop()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def urls(self) -> list[str]:
        return [f"http://{self.host}:{port}/v1" for port in self.ports]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None]

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> list[str]:
        """Start every server, wait until each answers, then watch them; returns their base URLs."""
        for index in range(len(self.ports)):
            self._spawn(index)
        for index in range(len(self.ports)):
            self._wait_ready(index, ready_timeout_s)
        self._watcher = threading.Thread(target=self._watch, name="llama-server-watch", daemon=True)
        self._watcher.start()
        log.info("llama.cpp servers ready: %s", ", ".join(self.urls))
        return self.urls

    def _spawn(self, index: int) -> None:
        if self.kind == "server":  # its warnings and errors (a GGML_ASSERT's message) go to our stderr
            nice = max(0, self.llm.server_nice)
            self._processes[index] = subprocess.Popen(
                server_argv(self.llm, self.binary, self.host, self.ports[index], MODEL_ALIAS, self.weights),
                stdout=subprocess.DEVNULL, preexec_fn=lambda: (die_with_parent(), os.nice(nice)))
            self._started_t[index] = time.monotonic()
            return
        self._dir = self._dir or Path(tempfile.mkdtemp(prefix="vp-llama-server-"))
        config = self._dir / f"slot{index}.json"
        config.write_text(json.dumps(server_config(self.llm, self.host, self.ports[index])))
        # stdout carries uvicorn's access log and the server's prints: dropped. Errors go to our stderr.
        self._processes[index] = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)],
            stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
        self._started_t[index] = time.monotonic()

    def _wait_ready(self, index: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        process = self._processes[index]
        while time.monotonic() < deadline:
            if process is None or process.poll() is not None:
                raise EngineError("llm", f"llama.cpp server on port {self.ports[index]} exited before it was ready")
            try:
                with urllib.request.urlopen(self.urls[index] + "/models", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise EngineError("llm", f"llama.cpp server on port {self.ports[index]} not ready after {timeout_s:g} s")

    def _watch(self) -> None:
        crashes = [0] * len(self.ports)
        while not self._stopping.wait(0.25):
            for index, process in enumerate(self._processes):
                if process is None or process.poll() is None or self._stopping.is_set():
                    continue
                if time.monotonic() - self._started_t[index] > STABLE_S:
                    crashes[index] = 0
                crashes[index] += 1
                self.restarts += 1
                backoff_s = BACKOFF_S[min(crashes[index], len(BACKOFF_S)) - 1]
                log.error("llama.cpp server on port %d died (%s); restart %d in %.1f s", self.ports[index],
                          describe_exit(process.returncode), self.restarts, backoff_s)
                if self._stopping.wait(backoff_s):
                    return
                self._spawn(index)
                try:
                    self._wait_ready(index, READY_TIMEOUT_S)
                    self._warm(index)
                except (EngineError, OSError) as exc:
                    log.error("llama.cpp server on port %d after its restart: %s", self.ports[index],
                              type(exc).__name__)

    def _warm(self, index: int) -> None:
        """One short reply per slot, so the server holds the system prompt's KV state (as at start-up)."""
        if not self.system_prompt:
            return
        threads = [threading.Thread(target=self._warm_slot, args=(index, slot), daemon=True)
                   for slot in range(self.slots)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _warm_slot(self, index: int, slot: int) -> None:
        body = {"model": MODEL_ALIAS, "max_tokens": 2, **warm_extra(self.slots, slot), "messages": [
            {"role": "system", "content": self.system_prompt}, {"role": "user", "content": "Hello."}]}
        request = urllib.request.Request(self.urls[index] + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except OSError as exc:
            log.error("llama.cpp server on port %d: warming slot %d: %s", self.ports[index], slot,
                      type(exc).__name__)

    def stop(self) -> None:
        self._stopping.set()
        for process in self._processes:
            if process is not None and process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self._processes:
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


class SlotsLlm:
    """A LanguageModel over several OpenAI-compatible endpoints: each reply goes to the one with the
    fewest replies in flight; a slot that refuses the connection is skipped for the next one.

    `per_slot` bounds the replies sent to one endpoint at once (1 for llama_cpp.server, which runs
    one at a time): a reply beyond that waits here, first come first served, for whichever slot
    frees first, instead of queueing behind a long reply on a slot chosen too early. None: no bound
    (an engine with continuous batching, such as vLLM, takes them all)."""

    def __init__(self, urls: Sequence[str], model: str, *, max_tokens: int, temperature: float,
                 read_timeout_s: float = 30.0, name: str = "", per_slot: int | None = None,
                 warm_slots: int = 1) -> None:
        if not urls:
            raise EngineError("llm", "no LLM server URL")
        self.name = name or f"llama.cpp-server x{len(urls)}"
        self._slots = [OpenAICompatLLM(url, model, name=f"slot {index}", max_tokens=max_tokens,
                                       temperature=temperature, read_timeout_s=read_timeout_s)
                       for index, url in enumerate(urls)]
        self._in_flight = [0] * len(self._slots)
        self._warm_slots = warm_slots  # llama-server's slots behind each URL, each warmed on its own
        self._free = asyncio.Semaphore(len(self._slots) * per_slot) if per_slot else None
        self._owned: ModelServers | None = None  # servers this engine started itself (unsupervised)

    @classmethod
    def from_settings(cls, llm) -> "SlotsLlm":
        """`serving = "url"`: llm.url (comma-separated base URLs); `"child"` / `"server"`: the
        supervisor's servers (llama_cpp.server processes / one llama-server), or, in an
        unsupervised process, servers started here and stopped when it exits."""
        kwargs = dict(max_tokens=llm.max_tokens, temperature=llm.temperature)
        if llm.serving == "url":
            urls = [u.strip() for u in llm.url.split(",") if u.strip()]
            return cls(urls, llm.served_model or MODEL_ALIAS, name=f"openai-compat x{len(urls)}", **kwargs)
        if llm.serving == "server":  # one llama-server: as many replies at once as it has slots; more wait
            # here, where a reply given up (a hang-up, a barge-in) before it was sent costs the server nothing
            slots = slot_count(llm)
            kwargs.update(name=f"llama-server x{slots}", warm_slots=slots, per_slot=slots)
        else:
            kwargs.update(per_slot=1)
        if urls_env := os.environ.get(ENV_LLM_URLS):
            return cls(urls_env.split(","), MODEL_ALIAS, **kwargs)
        from voice_pipeline.engines.registry import system_prompt

        servers = ModelServers(llm, 1 if llm.serving == "server" else llm.instances,
                               system_prompt=system_prompt(llm.system_prompt_file), kind=llm.serving)
        import atexit

        atexit.register(servers.stop)
        engine = cls(servers.start(), MODEL_ALIAS, **kwargs)
        engine._owned = servers
        return engine

    def _order(self) -> list[int]:
        return sorted(range(len(self._slots)), key=lambda i: self._in_flight[i])

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]:
        # aclosing: closing this iterator closes the inner ones now, and with them the HTTP response,
        # which stops the server generating (not whenever the garbage collector gets to them).
        if self._free is None:
            async with aclosing(self._stream(messages, max_tokens)) as texts:
                async for text in texts:
                    yield text
            return
        await self._free.acquire()
        try:
            async with aclosing(self._stream(messages, max_tokens)) as texts:
                async for text in texts:
                    yield text
        finally:
            self._free.release()

    async def _stream(self, messages: Sequence[ChatMessage], max_tokens: int | None) -> AsyncIterator[str]:
        order = self._order()
        for attempt, index in enumerate(order):
            self._in_flight[index] += 1
            started = False
            try:
                async with aclosing(self._slots[index].stream(messages, max_tokens=max_tokens)) as texts:
                    async for text in texts:
                        started = True
                        yield text
                return
            except EngineError as exc:
                if started or attempt == len(order) - 1 or not _refused(exc):
                    raise
                log.warning("LLM %s refused the connection; trying the next one", self._slots[index].name)
            finally:
                self._in_flight[index] -= 1

    async def warm_up(self, system_prompt: str) -> None:
        """One short reply on every slot: each server (each llama-server slot) then holds the system
        prompt's KV state, so a first turn evaluates only what follows it."""
        wire = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hello."}]

        async def one(client: OpenAICompatLLM, slot: int) -> None:
            async for _ in client.stream_chunks(client.request_body(wire, 2, **warm_extra(self._warm_slots, slot))):
                pass

        await asyncio.gather(*(one(client, slot) for client in self._slots for slot in range(self._warm_slots)))

    async def aclose(self) -> None:
        await asyncio.gather(*(slot.aclose() for slot in self._slots))
        if self._owned is not None:
            await asyncio.to_thread(self._owned.stop)


def _refused(exc: EngineError) -> bool:
    return "ClientConnectorError" in str(exc) or "ServerDisconnectedError" in str(exc)




def main(argv: list[str] | None = None) -> int:
    """Shared llama.cpp servers for several pipeline workers (docs/scaling.md); settings from VP_LLM_*."""
    from voice_pipeline.app.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m voice_pipeline.engines.llama_server", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append", required=True, help="one per slot (repeat it)")
    parser.add_argument("--config", help="TOML settings file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from voice_pipeline.engines.registry import system_prompt

    llm = Settings.load(args.config).llm
    kind = "server" if llm.serving == "server" else "child"  # VP_LLM_SERVING=server: one llama-server
    if kind == "server" and len(args.port) != 1:
        parser.error("with VP_LLM_SERVING=server: one --port (its slots are llm.server_slots)")
    servers = ModelServers(llm, len(args.port), args.host, args.port, system_prompt(llm.system_prompt_file), kind)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    servers.start()
    print("llama-server: ready on " + " ".join(servers.urls), file=sys.stderr, flush=True)
    stop.wait()
    servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
