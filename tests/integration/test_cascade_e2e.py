"""The routed cascade end to end through the WebSocket server: a large-routed question goes to a
real OpenAI-compatible server (llama-cpp-python's, behind a fault proxy) and falls back to the
local model when that server is slow or down. The user hears an answer every time, and the
turn's metrics say which level gave it."""

from __future__ import annotations

import contextlib

import pytest
from aiohttp import web

from voice_pipeline_client.realtime import RealtimeClient

from .conftest import free_port, start_server, stop_server
from .test_remote_llm_faults import FaultProxy, start_llama_server, stop

pytestmark = pytest.mark.integration

LARGE_QUESTION = "Can you explain step by step how to plan a two week trip to Japan on a budget?"


@pytest.fixture(scope="module")
def llama_url():
    process, url, log_path = start_llama_server()
    yield url
    stop(process, log_path)


@pytest.fixture(scope="module")
def proxy_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, proxy_port):
    server = start_server(
        tmp_path_factory.mktemp("cascade"),
        VP_REMOTE_URL=f"http://127.0.0.1:{proxy_port}/v1",
        VP_REMOTE_MODEL="smollm2",
        VP_REMOTE_MAX_TOKENS="32",
        VP_REMOTE_FIRST_TOKEN_MS="15000",  # generous for a loaded 2-core machine; the held fault (30 s) exceeds it
        VP_REMOTE_READ_TIMEOUT_S="60",  # longer than the budget, so a held first token is a budget miss
        VP_REMOTE_BREAKER_FAILURES="10",
        VP_TELEPHONY_SIP_ENABLED="false",
    )
    yield server
    stop_server(server)


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str, port: int, fault: str):
    proxy = FaultProxy(upstream)
    proxy.fault = fault
    app = web.Application()
    app.router.add_post("/v1/chat/completions", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield proxy
    finally:
        await runner.shutdown()
        await runner.cleanup()


async def ask(url: str) -> tuple[dict, dict, int]:
    async with RealtimeClient(url) as client:
        await client.start()
        item = {"role": "user", "content": [{"type": "input_text", "text": LARGE_QUESTION}]}
        await client.send({"type": "conversation.item.create", "item": item})
        metrics = await client.wait_for("turn.metrics", 120)
        done = client.received.of_type("response.done")[0]
        return metrics, done, len(client.received.audio)


async def test_healthy_remote_answers_large_questions(pipeline, llama_url, proxy_port):
    async with fault_proxy(llama_url, proxy_port, "none"):
        metrics, done, audio_frames = await ask(pipeline.ws)
    assert metrics["route"] == "large" and metrics["answered_by"] == "large", metrics.get("llm_attempts")
    assert metrics["llm_engine"] == "remote" and metrics["llm_fallbacks"] == 0
    assert done["status"] == "completed" and done["text"] and audio_frames > 0


async def test_slow_remote_hands_over_to_the_local_model(pipeline, llama_url, proxy_port):
    async with fault_proxy(llama_url, proxy_port, "slow_first_token"):
        metrics, done, audio_frames = await ask(pipeline.ws)
    assert metrics["route"] == "large" and metrics["answered_by"] == "local"
    assert metrics["llm_budget_misses"] == 1
    assert [a["outcome"] for a in metrics["llm_attempts"]] == ["first_token_timeout", "answered"]
    assert done["status"] == "completed" and audio_frames > 0


async def test_remote_down_hands_over_to_the_local_model(pipeline):
    metrics, done, audio_frames = await ask(pipeline.ws)  # no proxy: nothing listens on the port
    assert metrics["answered_by"] == "local"
    assert [a["outcome"] for a in metrics["llm_attempts"]] == ["error", "answered"]
    assert done["status"] == "completed" and audio_frames > 0
    prometheus = pipeline.get("/metrics")[1]
    assert 'vp_fallbacks_total{reason="error",stage="llm"}' in prometheus
    assert 'vp_routes_total{route="large"}' in prometheus
    assert 'vp_answers_total{level="local"}' in prometheus
