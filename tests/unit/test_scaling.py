"""Serving many conversations: /ready says "full" at the admission limit, the supervisor runs
several workers on one port (SO_REUSEPORT) and restarts each on its own, `SlotsLlm` spreads
replies over model servers and skips one that refuses the connection, and `llm.serving` picks
the engine (and, for "server", the llama-server command line)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time

import aiohttp
import pytest
from aiohttp import web

from voice_pipeline.app.compose import make_llm
from voice_pipeline.app.server import PipelineServer
from voice_pipeline.app.settings import Settings
from voice_pipeline.app.supervisor import Supervisor, WorkerInfo, worker_count
from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.engines import llama_server
from voice_pipeline.engines.llama_server import ENV_LLM_URLS, ModelServers, SlotsLlm, server_config
from voice_pipeline.engines.llama_server_cmd import ENV_BIN, cache_path, find_binary, server_argv
from voice_pipeline.errors import ConfigError, EngineError

from .fakes import fake_engines, make_settings
from .loopback import free_port, serve_on_loopback


async def test_ready_says_full_with_a_reason_at_the_session_limit():
    settings = make_settings()
    settings.server.max_sessions = 1
    server = PipelineServer(settings, fake_engines())
    runner, port = await serve_on_loopback(server.app())
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/ready") as ready:
                assert ready.status == 200
            async with http.ws_connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
                await ws.send_json({"type": "session.start"})
                assert (await ws.receive_json())["type"] == "session.created"
                async with http.get(f"http://127.0.0.1:{port}/ready") as ready:
                    body = await ready.json()
                    assert ready.status == 503 and body["full"] is True and body["reason"] == "server_busy"
            for _ in range(100):  # the session is torn down after the socket closes
                async with http.get(f"http://127.0.0.1:{port}/ready") as ready:
                    if ready.status == 200:
                        break
                await asyncio.sleep(0.05)
            assert ready.status == 200
    finally:
        await runner.cleanup()


_WORKER = (
    "import os, signal, sys, time\n"
    "from voice_pipeline.app.supervisor import WorkerInfo, signal_ready\n"
    "info = WorkerInfo.from_env()\n"
    "open(os.path.join(sys.argv[1], f'{info.index}-{info.restarts}-{os.getpid()}'), 'w').write("
    "f'{info.count} {info.last_exit} ' + os.environ.get('EXTRA', ''))\n"
    "signal_ready()\n"
    "time.sleep(60)\n"
)


def test_supervisor_runs_several_workers_and_restarts_only_the_one_that_died(tmp_path):
    supervisor = Supervisor([sys.executable, "-c", _WORKER, str(tmp_path)], workers=3, env={"EXTRA": "shared"})
    seen: dict = {}

    def wait_files(n: int) -> list[str]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = sorted(os.listdir(tmp_path))
            if len(names) >= n:
                return names
            time.sleep(0.05)
        return sorted(os.listdir(tmp_path))

    def crash_one_then_stop() -> None:  # the supervisor's signal handlers need the main thread
        try:
            seen["first"] = first = wait_files(3)
            time.sleep(0.3)  # every worker has said it is ready
            victim = next(name for name in first if name.startswith("1-"))
            os.kill(int(victim.split("-")[2]), signal.SIGSEGV)
            seen["new"] = sorted(set(wait_files(4)) - set(first))
            seen["live"] = [worker.process for worker in supervisor._workers]
            seen["alive"] = [p is not None and p.poll() is None for p in seen["live"]]
        finally:
            supervisor._forward(signal.SIGTERM, None)

    threading.Thread(target=crash_one_then_stop, daemon=True).start()
    assert supervisor.run() == 0
    first = seen["first"]
    assert [name.split("-")[:2] for name in first] == [["0", "0"], ["1", "0"], ["2", "0"]]
    assert all((tmp_path / name).read_text() == "3  shared" for name in first)
    assert len(seen["new"]) == 1 and seen["new"][0].startswith("1-1-"), "only worker 1 is started again"
    assert (tmp_path / seen["new"][0]).read_text() == "3 SIGSEGV shared"
    assert seen["alive"] == [True, True, True] and supervisor.restarts == 1
    assert all(p.poll() is not None for p in seen["live"]), "a stop leaves no worker behind"


def test_a_worker_failing_before_ready_stops_them_all():
    supervisor = Supervisor([sys.executable, "-c", "import sys; sys.exit(3)"], workers=2)
    assert supervisor.run() == 3
    assert all(w.process is None or w.process.poll() is not None for w in supervisor._workers)


def test_worker_count_and_info(monkeypatch):
    assert worker_count(3) == 3
    assert worker_count(0) == max(1, (os.cpu_count() or 1) // 4)
    monkeypatch.setenv("VOICE_PIPELINE_WORKER_COUNT", "4")
    monkeypatch.setenv("VOICE_PIPELINE_WORKER_INDEX", "2")
    assert (WorkerInfo.from_env().count, WorkerInfo.from_env().index) == (4, 2)
    monkeypatch.setenv("VOICE_PIPELINE_WORKER_COUNT", "x")
    assert WorkerInfo.from_env().count == 1


class _FakeOpenAI:
    """A tiny OpenAI-compatible streaming endpoint that counts its requests."""

    def __init__(self, words: list[str], delay_s: float = 0.0) -> None:
        self.words, self.delay_s, self.requests = words, delay_s, 0
        self.bodies: list[dict] = []
        self.active = self.max_active = 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.bodies.append(await request.json())
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i, word in enumerate(self.words):
                await asyncio.sleep(self.delay_s)
                last = i == len(self.words) - 1
                chunk = {"choices": [{"delta": {"content": word}, "finish_reason": "stop" if last else None}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            return response
        finally:
            self.active -= 1

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        runner, port = await serve_on_loopback(app)
        return runner, f"http://127.0.0.1:{port}/v1"


async def _collect(llm: SlotsLlm) -> str:
    return "".join([t async for t in llm.stream([ChatMessage("user", "hi")])])


async def test_slots_spread_concurrent_replies_and_skip_a_dead_server():
    a, b = _FakeOpenAI(["a", "b", "c"], delay_s=0.05), _FakeOpenAI(["x", "y"], delay_s=0.05)
    (runner_a, url_a), (runner_b, url_b) = await a.start(), await b.start()
    dead_url = f"http://127.0.0.1:{free_port()}/v1"
    llm = SlotsLlm([url_a, url_b], "local", max_tokens=7, temperature=0.1)
    try:
        replies = await asyncio.gather(_collect(llm), _collect(llm))
        assert sorted(replies) == ["abc", "xy"] and (a.requests, b.requests) == (1, 1)
        assert a.bodies[0]["model"] == "local" and a.bodies[0]["max_tokens"] == 7 and a.bodies[0]["stream"]
        await llm.warm_up("You are brief.")  # one short reply on every slot
        assert (a.requests, b.requests) == (2, 2)
        assert a.bodies[-1]["messages"][0] == {"role": "system", "content": "You are brief."}
        failover = SlotsLlm([dead_url, url_b], "local", max_tokens=7, temperature=0.1)
        assert await _collect(failover) == "xy"  # the refused slot is skipped
        await failover.aclose()
        only_dead = SlotsLlm([dead_url], "local", max_tokens=7, temperature=0.1)
        with pytest.raises(EngineError):
            await _collect(only_dead)
        await only_dead.aclose()
    finally:
        await llm.aclose()
        await runner_a.cleanup()
        await runner_b.cleanup()


async def test_one_reply_per_slot_waits_for_whichever_slot_frees_first():
    slow, fast = _FakeOpenAI(["s", "l", "o", "w"], delay_s=0.15), _FakeOpenAI(["f"], delay_s=0.02)
    (runner_s, url_s), (runner_f, url_f) = await slow.start(), await fast.start()
    llm = SlotsLlm([url_s, url_f], "local", max_tokens=7, temperature=0.1, per_slot=1)
    try:
        first = asyncio.create_task(_collect(llm))
        await asyncio.sleep(0.02)
        replies = await asyncio.gather(_collect(llm), _collect(llm), first)
        assert sorted(replies) == ["f", "f", "slow"]
        assert (slow.requests, fast.requests) == (1, 2), "the third reply waited for the fast slot"
        assert slow.max_active == fast.max_active == 1
        stream = llm.stream([ChatMessage("user", "hi")])
        assert await anext(stream) in ("s", "f")
        await stream.aclose()  # closing the reply frees its slot at once
        assert llm._in_flight == [0, 0] and not llm._free.locked()
    finally:
        await llm.aclose()
        await runner_s.cleanup()
        await runner_f.cleanup()


def test_serving_setting_picks_the_engine(monkeypatch):
    settings = Settings.load(environ={"VP_LLM_SERVING": "url", "VP_LLM_URL": "http://h1:8000/v1, http://h2:8000/v1",
                                      "VP_LLM_SERVED_MODEL": "Qwen/Qwen2.5-1.5B-Instruct"})
    llm = make_llm(settings.llm)
    assert isinstance(llm, SlotsLlm) and [s.url for s in llm._slots] == [
        "http://h1:8000/v1/chat/completions", "http://h2:8000/v1/chat/completions"]
    assert llm._slots[0].model == "Qwen/Qwen2.5-1.5B-Instruct"
    monkeypatch.setenv(ENV_LLM_URLS, "http://127.0.0.1:1/v1")  # a supervisor's child servers
    settings.llm.serving = "child"
    assert [s.url for s in make_llm(settings.llm)._slots] == ["http://127.0.0.1:1/v1/chat/completions"]
    settings.llm.serving = "elsewhere"
    with pytest.raises(ConfigError):
        make_llm(settings.llm)


def test_child_server_config_keeps_the_voice_lora_and_never_interrupts():
    settings = Settings.load(environ={"VP_LLM_N_THREADS": "3"})
    config = server_config(settings.llm, "127.0.0.1", 9999)
    assert config["interrupt_requests"] is False  # else a waiting request ends the reply in progress
    (model,) = config["models"]
    assert model["lora_path"].endswith(".gguf") and model["n_threads"] == 3 and model["model_alias"] == "local"
    settings.llm.variant = "base"
    assert "lora_path" not in server_config(settings.llm, "127.0.0.1", 9999)["models"][0]


def test_child_servers_remove_their_config_files_when_stopped(monkeypatch):
    """Each start of `serve` wrote a temporary folder of configs that outlived it (hundreds in /tmp)."""
    class _Running:
        pid, returncode = 1, None
        def poll(self): return self.returncode
        def terminate(self): self.returncode = -15
        def wait(self, timeout=None): return self.returncode
    monkeypatch.setattr(llama_server.subprocess, "Popen", lambda *args, **kwargs: _Running())
    settings = Settings.load(environ={})
    servers = ModelServers(settings.llm, 2, ports=[1, 2], kind="child")
    servers._spawn(0)
    servers._spawn(1)
    folder = servers._dir
    assert sorted(p.name for p in folder.iterdir()) == ["slot0.json", "slot1.json"]
    servers.stop()
    assert not folder.exists()
    assert ModelServers(settings.llm, 1, ports=[3], kind="child")._dir is None  # nothing before a spawn


async def test_llama_server_mode_sends_as_many_replies_as_it_has_slots_and_warms_each_slot(monkeypatch):
    endpoint = _FakeOpenAI(["a", "b"], delay_s=0.05)
    runner, url = await endpoint.start()
    monkeypatch.setenv(ENV_LLM_URLS, url)  # the supervisor's one llama-server
    settings = Settings.load(environ={"VP_LLM_SERVING": "server", "VP_LLM_SERVER_SLOTS": "3"})
    llm = make_llm(settings.llm)
    try:
        assert await asyncio.gather(*(_collect(llm) for _ in range(4))) == ["ab"] * 4
        assert endpoint.max_active == 3, "a reply beyond the slots waits in the worker, not in the server"
        await llm.warm_up("You are brief.")
        assert sorted(body["id_slot"] for body in endpoint.bodies[4:]) == [0, 1, 2], "one warm-up per slot"
    finally:
        await llm.aclose()
        await runner.cleanup()


def test_llama_server_command_line_keeps_the_voice_lora_and_gives_each_slot_the_context(tmp_path, monkeypatch):
    settings = Settings.load(environ={"VP_LLM_SERVING": "server", "VP_LLM_SERVER_SLOTS": "4", "VP_LLM_N_THREADS": "2"})
    argv = server_argv(settings.llm, "/bin/llama-server", "127.0.0.1", 9999, "local")

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert argv[0] == "/bin/llama-server" and value("--parallel") == "4" and value("--threads") == "2"
    assert value("--ctx-size") == str(4 * settings.llm.n_ctx) and value("--alias") == "local"
    assert value("--lora").endswith(".gguf") and "--cont-batching" in argv and "--no-webui" in argv
    assert "--kv-unified" in argv, "one KV cache for all slots: the faster token pace with many slots"
    assert value("--cache-ram") == "0", "no host prompt cache: it held first tokens back under load"
    settings.llm.variant, settings.llm.server_slots, settings.llm.instances = "base", 0, 3
    argv = server_argv(settings.llm, "/bin/llama-server", "127.0.0.1", 9999, "local")
    assert "--lora" not in argv and value("--parallel") == "3", "0 slots: llm.instances"
    settings.llm.server_kv_unified = False
    argv = server_argv(settings.llm, "/bin/llama-server", "127.0.0.1", 9999, "local")
    assert "--no-kv-unified" in argv and "--kv-unified" not in argv


def test_llama_server_binary_from_the_setting_the_environment_or_the_build_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(ENV_BIN, raising=False)
    with pytest.raises(ConfigError, match="build-llama-server.sh"):
        find_binary("")
    built = cache_path()
    assert str(built).startswith(str(tmp_path / "voice_pipeline" / "llama-server"))
    built.parent.mkdir(parents=True)
    built.write_text("#!/bin/sh\n")
    built.chmod(0o755)
    assert find_binary("") == str(built)
    monkeypatch.setenv(ENV_BIN, "/bin/true")
    assert find_binary("") == "/bin/true" and find_binary("/bin/sh") == "/bin/sh"
    with pytest.raises(ConfigError):
        find_binary(str(tmp_path / "missing"))


def test_serve_without_a_llama_server_binary_says_so_and_starts_no_worker(monkeypatch, tmp_path, capsys):
    from voice_pipeline.app import supervisor

    monkeypatch.setenv("VP_LLM_SERVING", "server")
    monkeypatch.setenv("VP_LLM_SERVER_BIN", str(tmp_path / "missing"))
    monkeypatch.setattr(supervisor, "Supervisor", lambda *a, **k: pytest.fail("a worker was started"))
    assert supervisor.supervise(["--port=0"]) == 2
    assert "llama-server binary" in capsys.readouterr().err
