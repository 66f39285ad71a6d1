"""OpenAICompatLLM against a scripted OpenAI-style SSE server on 127.0.0.1 (no model needed)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import AsyncIterator

import pytest
from aiohttp import web

from voice_pipeline.engines.base import ChatMessage, LanguageModel
from voice_pipeline.engines.openai_compat import OpenAICompatLLM
from voice_pipeline.errors import EngineError

pytestmark = pytest.mark.integration
MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "hi")]


def chunk(text: str | None = None, finish: str | None = None, role: bool = False) -> str:
    delta = {"role": "assistant"} if role else ({"content": text} if text is not None else {})
    payload = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(payload)}\n\n"


GOOD = [": keep-alive\n\n", chunk(role=True), chunk("Hel"), chunk("lo"), chunk(None, "stop"),
        'data: {"choices": [], "usage": {"total_tokens": 3}}\n\n', "data: [DONE]\n\n"]


class Scripted:
    """One scripted reply per request: a list of raw SSE pieces, an HTTP status, or a cut."""

    def __init__(self) -> None:
        self.pieces: list[str] = GOOD
        self.status = 200
        self.cut_after: int | None = None
        self.requests: list[dict] = []
        self.headers: list[dict] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.status != 200:
            return web.json_response({"error": {"message": "nope"}}, status=self.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, piece in enumerate(self.pieces):
            if self.cut_after is not None and index == self.cut_after:
                request.transport.close()  # the connection drops mid-answer
                return response
            await response.write(piece.encode())
        await response.write_eof()
        return response

    async def stall(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk("Hi").encode())
        await asyncio.sleep(1)  # longer than the client's read timeout; the test never waits for it
        return response

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "scripted"}]})


@pytest.fixture
async def server() -> AsyncIterator[tuple[Scripted, str]]:
    scripted = Scripted()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", scripted.handle)
    app.router.add_get("/v1/models", scripted.models)
    app.router.add_post("/stall/v1/chat/completions", scripted.stall)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield scripted, f"http://127.0.0.1:{port}/v1"
    await runner.shutdown()
    await runner.cleanup()


async def collect(llm: OpenAICompatLLM) -> str:
    try:
        return "".join([t async for t in llm.stream(MESSAGES, max_tokens=7)])
    finally:
        await llm.aclose()


async def test_streams_deltas_and_sends_an_openai_request(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    llm = OpenAICompatLLM(url, "big-model", api_key="sekret", name="remote")
    assert isinstance(llm, LanguageModel)
    assert await collect(llm) == "Hello"
    body = scripted.requests[0]
    assert (body["model"], body["stream"], body["max_tokens"]) == ("big-model", True, 7)
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert scripted.headers[0]["Authorization"] == "Bearer sekret"


async def test_finish_reason_without_done_is_a_complete_reply(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.pieces = [chunk("Hi"), chunk(None, "length")]
    assert await collect(OpenAICompatLLM(url, "m")) == "Hi"


async def test_no_key_sends_no_authorization(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    await collect(OpenAICompatLLM(url, "m"))
    assert "Authorization" not in scripted.headers[0]


@pytest.mark.parametrize(
    ("pieces", "cut_after", "message"),
    [
        ([chunk("Hi"), "data: {not json\n\n"], None, "unparsable"),
        ([chunk("Hi"), 'data: ["a list"]\n\n'], None, "not an object"),
        ([chunk("Hi"), 'data: {"error": {"message": "overloaded"}}\n\n'], None, "error mid-stream"),
        ([chunk("Hi"), 'data: {"id": 1}\n\n'], None, "without choices"),
        ([chunk("Hi"), chunk(" there")], None, "ended before"),
        ([chunk("Hi"), chunk(" there"), chunk(None, "stop")], 1, "ClientPayloadError"),
    ],
)
async def test_broken_streams_raise_engine_error(
    server: tuple[Scripted, str], pieces: list[str], cut_after: int | None, message: str
) -> None:
    scripted, url = server
    scripted.pieces, scripted.cut_after = pieces, cut_after
    received: list[str] = []
    llm = OpenAICompatLLM(url, "m")
    with pytest.raises(EngineError, match=message) as caught:
        async for text in llm.stream(MESSAGES):
            received.append(text)
    await llm.aclose()
    assert received[0] == "Hi" and caught.value.stage == "llm"


@pytest.mark.parametrize("status", [401, 429, 500, 503])
async def test_http_errors_raise_engine_error(server: tuple[Scripted, str], status: int) -> None:
    scripted, url = server
    scripted.status = status
    with pytest.raises(EngineError, match=f"HTTP {status}"):
        await collect(OpenAICompatLLM(url, "m"))


async def test_connect_refused_raises_engine_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = OpenAICompatLLM(f"http://127.0.0.1:{port}/v1", "m", connect_timeout_s=1.0)
    with pytest.raises(EngineError, match="ClientConnectorError"):
        await collect(llm)
    with pytest.raises(EngineError):
        await llm.warm_up("sys")


async def test_warm_up_checks_the_models_endpoint(server: tuple[Scripted, str]) -> None:
    _, url = server
    llm = OpenAICompatLLM(url, "m")
    await llm.warm_up("sys")
    await llm.aclose()


async def test_a_stalled_stream_hits_the_read_timeout(server: tuple[Scripted, str]) -> None:
    _, url = server
    received: list[str] = []
    llm = OpenAICompatLLM(url.replace("/v1", "/stall/v1"), "m", read_timeout_s=0.2)
    with pytest.raises(EngineError, match="timed out"):
        async for text in llm.stream(MESSAGES):
            received.append(text)
    await llm.aclose()
    assert received == ["Hi"]


async def test_unknown_path_is_an_engine_error(server: tuple[Scripted, str]) -> None:
    _, url = server
    with pytest.raises(EngineError, match="HTTP 404"):
        await collect(OpenAICompatLLM(url.replace("/v1", "/nowhere"), "m"))


def test_from_settings_reads_every_field() -> None:
    from types import SimpleNamespace

    section = SimpleNamespace(url="http://127.0.0.1:1/v1/", model="m", api_key="k", connect_timeout_s=1.0,
                              read_timeout_s=2.0, total_timeout_s=3.0, max_tokens=9, temperature=0.1)
    llm = OpenAICompatLLM.from_settings(section)
    assert llm.url == "http://127.0.0.1:1/v1/chat/completions"
    assert (llm.model, llm.max_tokens, llm.temperature) == ("m", 9, 0.1)
