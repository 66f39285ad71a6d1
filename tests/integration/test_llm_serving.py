"""`llm.serving = "child"` / `"server"`: `serve` runs the LLM in llama.cpp servers of its own
(llama_cpp.server processes, or one llama-server with parallel slots), shared by two workers on one
port. A native crash of such a server costs a restart of that server, not the sessions: the
conversation that was open goes on and its next reply is completed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from voice_pipeline_client.realtime import RealtimeClient

from .conftest import start_server, stop_server

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes()).replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _llm_servers(supervisor_pid: int) -> list[int]:
    return sorted(p for p in _children(supervisor_pid)
                  if "llama_cpp.server" in _cmdline(p) or "llama-server" in _cmdline(p))


async def _ask(client: RealtimeClient, text: str) -> dict:
    before = len(client.received.of_type("response.done"))
    await client.send({"type": "conversation.item.create",
                       "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    deadline = time.monotonic() + 120
    while len(client.received.of_type("response.done")) == before:
        assert time.monotonic() < deadline, "no reply"
        await client.wait_for("response.done", 120)
    return client.received.of_type("response.done")[-1]


@pytest.mark.parametrize("serving, llm_count", [("child", 2), ("server", 1)])
async def test_llm_servers_shared_by_two_workers_survive_a_crash(tmp_path, serving, llm_count):
    server = start_server(tmp_path, VP_LLM_SERVING=serving, VP_LLM_INSTANCES="2", VP_LLM_N_THREADS="1",
                          VP_SERVER_WORKERS="2", VP_TELEPHONY_SIP_ENABLED="false")
    try:
        supervisor = server.process.pid
        llm_servers = _llm_servers(supervisor)
        workers = [p for p in _children(supervisor) if "--worker" in _cmdline(p)]
        assert len(llm_servers) == llm_count and len(workers) == 2, "the supervisor's children: LLM server(s), 2 workers"
        for _ in range(100):  # the second worker binds the port once its models are loaded
            if len({json.loads(server.get("/health")[1])["pid"] for _ in range(8)}) == 2:
                break
            time.sleep(0.3)
        assert {json.loads(server.get("/health")[1])["pid"] for _ in range(16)} <= set(workers)

        async with RealtimeClient(server.ws) as client:
            await client.start()
            first = await _ask(client, "What is the capital of France?")
            assert first["status"] == "completed" and first["text"]
            for pid in llm_servers:  # what a GGML_ASSERT does to a server
                os.kill(pid, signal.SIGABRT)
            deadline = time.monotonic() + 60
            while len(set(_llm_servers(supervisor)) - set(llm_servers)) < llm_count:
                assert time.monotonic() < deadline, f"LLM servers not restarted:\n{server.log_path.read_text()[-3000:]}"
                time.sleep(0.2)
            time.sleep(1.0)
            second = await _ask(client, "Tell me about the moon.")
            assert second["status"] == "completed" and second["text"], "the same session answers after the crash"
        assert [p for p in _children(supervisor) if "--worker" in _cmdline(p)] == workers, "no worker restarted"
        assert "died (SIGABRT)" in server.log_path.read_text()
    finally:
        stop_server(server)
    assert server.process.returncode == 0
    assert not [p for p in llm_servers if Path(f"/proc/{p}").exists()]
