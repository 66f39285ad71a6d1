"""A server that closes a pooled keep-alive connection as the next request arrives on it (as
llama-server's HTTP library does after some requests or some idle time) costs no reply: the
request goes again on a new connection. A server that is down still fails at once."""

from __future__ import annotations

import asyncio
import json

import pytest

from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.engines.openai_compat import OpenAICompatLLM
from voice_pipeline.errors import EngineError

MESSAGES = [ChatMessage("user", "Hello?")]


def sse_reply(text: str) -> bytes:
    chunks = [{"choices": [{"delta": {"content": text}, "finish_reason": None}]},
              {"choices": [{"delta": {}, "finish_reason": "stop"}]}]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return (f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n" + body).encode()


class OneRequestPerConnection:
    """Answers the first request on each connection and keeps it open without saying it will
    close it; a second request on the same connection is dropped unanswered, connection closed."""

    def __init__(self) -> None:
        self.connections = 0
        self.dropped = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                if answered:
                    self.dropped += 1
                    return
                writer.write(sse_reply("Hi there."))
                await writer.drain()
                answered = True
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def replies(llm: OpenAICompatLLM, count: int) -> list[str]:
    out = []
    for _ in range(count):
        out.append("".join([text async for text in llm.stream(MESSAGES)]))
    return out


async def test_a_request_on_a_connection_the_server_closed_is_sent_again_on_a_new_one():
    server_side = OneRequestPerConnection()
    server = await asyncio.start_server(server_side.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    llm = OpenAICompatLLM(f"http://127.0.0.1:{port}/v1", "m", name="local")
    try:
        assert await replies(llm, 3) == ["Hi there."] * 3
    finally:
        await llm.aclose()
        server.close()
        await server.wait_closed()
    assert server_side.dropped >= 1  # the stale connection was really reused and really dropped
    assert server_side.connections == 3


async def test_a_server_that_is_down_still_fails_at_once():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    llm = OpenAICompatLLM(f"http://127.0.0.1:{port}/v1", "m", name="local")
    try:
        with pytest.raises(EngineError, match="ClientConnectorError"):
            await replies(llm, 1)
    finally:
        await llm.aclose()
