"""A LanguageModel that streams from any OpenAI-compatible /v1/chat/completions endpoint (SSE).

Works with vLLM, llama.cpp's server, llama-cpp-python's server and hosted APIs. Every failure
(connect refused, timeout, HTTP error, an unparsable chunk, a stream cut before it finished)
raises `EngineError("llm", ...)`. Closing the iterator closes the HTTP response, which stops the
server generating. The API key and the messages are never logged or put in error messages.

Requests reuse pooled keep-alive connections. A server may close one just as a request is sent on
it (llama-server closes a connection idle for 5 s, or after 100 requests; aiohttp keeps idle ones
for 15 s): that request failed before any response, so it is sent once more on a new connection
instead of costing the user a reply.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import AsyncIterator, Sequence

import aiohttp

from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.errors import EngineError

_DONE = "[DONE]"
# A pooled connection the server had closed: the request never reached it (a refused connect,
# ClientConnectorError, is a down server and is not retried here).
_STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class OpenAICompatLLM:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        name: str = "remote",
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 10.0,
        total_timeout_s: float = 120.0,
        max_tokens: int = 512,
        temperature: float = 0.3,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """`base_url` is the API root, e.g. "http://127.0.0.1:8080/v1"; `read_timeout_s` bounds
        the wait for each chunk, `total_timeout_s` the whole reply."""
        self.name = name
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.models_url = base_url.rstrip("/") + "/models"
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(
            total=total_timeout_s, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_settings(cls, remote) -> "OpenAICompatLLM":
        """From a settings section with url, model, api_key, connect/read/total_timeout_s,
        max_tokens and temperature (see docs/routing.md for the proposed [remote] section)."""
        return cls(
            remote.url,
            remote.model,
            remote.api_key,
            connect_timeout_s=remote.connect_timeout_s,
            read_timeout_s=remote.read_timeout_s,
            total_timeout_s=remote.total_timeout_s,
            max_tokens=remote.max_tokens,
            temperature=remote.temperature,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    def _body(self, messages: Sequence[ChatMessage], max_tokens: int | None) -> dict:
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": self.temperature,
        }

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]:
        body = self._body(messages, max_tokens)
        try:
            async with self._post(body) as response:
                async for text in _read_sse(response, self.name):
                    yield text
        except EngineError:
            raise
        except asyncio.TimeoutError as exc:
            raise EngineError("llm", f"{self.name}: timed out") from exc
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: an SSE line over aiohttp's limit
            raise EngineError("llm", f"{self.name}: {type(exc).__name__}") from exc

    @asynccontextmanager
    async def _post(self, body: dict) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `body`; the response, once its status is known to be a success. Sent a second time,
        on a new connection, when the first try died before any response (a stale keep-alive
        connection); aiohttp's errors pass through for the callers to turn into EngineError."""
        for attempt in (1, 2):
            try:
                response = await self._client().post(self.url, json=body, headers=self._headers,
                                                     timeout=self._timeout)
                break
            except aiohttp.ClientConnectorError:
                raise
            except _STALE_CONNECTION:
                if attempt == 2:
                    raise
        async with response:  # leaving early closes an unfinished response's connection: generation stops
            if response.status >= 400:
                raise EngineError("llm", f"{self.name}: HTTP {response.status} {response.reason}")
            yield response

    def request_body(self, wire_messages: list[dict], max_tokens: int | None, **extra: object) -> dict:
        """A streaming chat-completions body for messages already in wire form (tool calling adds `tools`)."""
        return {"model": self.model, "messages": wire_messages, "stream": True,
                "max_tokens": max_tokens or self.max_tokens, "temperature": self.temperature, **extra}

    async def stream_chunks(self, body: dict) -> AsyncIterator[dict]:
        """POST `body` and yield each parsed stream chunk (for callers that need more than the text:
        tool calls); failures raise EngineError as in `stream`."""
        try:
            async with self._post(body) as response:
                finished = False
                async for raw in response.content:
                    line = raw.decode("utf-8", errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:"):].strip()
                    if data == _DONE:
                        return
                    chunk = _load_chunk(data, self.name)
                    choices = chunk["choices"]
                    finished = finished or bool(choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"))
                    yield chunk
                if not finished:
                    raise EngineError("llm", f"{self.name}: stream ended before the reply finished")
        except EngineError:
            raise
        except asyncio.TimeoutError as exc:
            raise EngineError("llm", f"{self.name}: timed out") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise EngineError("llm", f"{self.name}: {type(exc).__name__}") from exc

    async def warm_up(self, system_prompt: str) -> None:
        """Check the endpoint answers (GET /models); no tokens are generated."""
        try:
            async with self._client().get(self.models_url, headers=self._headers, timeout=self._timeout) as response:
                if response.status >= 400:
                    raise EngineError("llm", f"{self.name}: HTTP {response.status} on /models")
                await response.read()
        except asyncio.TimeoutError as exc:
            raise EngineError("llm", f"{self.name}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise EngineError("llm", f"{self.name}: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None


async def _read_sse(response: aiohttp.ClientResponse, name: str) -> AsyncIterator[str]:
    """Yield each chunk's delta text; raise EngineError on garbage or a stream cut before the end."""
    finished = False
    async for raw in response.content:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line or line.startswith(":") or not line.startswith("data:"):
            continue  # blank separators, comments, "event:"/"id:" fields
        data = line[len("data:"):].strip()
        if data == _DONE:
            return
        text, finish_reason = _parse_chunk(data, name)
        if text:
            yield text
        finished = finished or finish_reason is not None
    if not finished:
        raise EngineError("llm", f"{name}: stream ended before the reply finished")


def _load_chunk(data: str, name: str) -> dict:
    """A stream chunk, checked: an object with a list of choices and no error."""
    chunk = json.loads(data) if data.startswith("{") else None
    if not isinstance(chunk, dict) or "error" in chunk or not isinstance(chunk.get("choices"), list):
        raise EngineError("llm", f"{name}: unusable stream chunk")
    return chunk


def _parse_chunk(data: str, name: str) -> tuple[str, str | None]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise EngineError("llm", f"{name}: unparsable stream chunk") from exc
    if not isinstance(chunk, dict):
        raise EngineError("llm", f"{name}: stream chunk is not an object")
    if "error" in chunk:
        raise EngineError("llm", f"{name}: server reported an error mid-stream")
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise EngineError("llm", f"{name}: stream chunk without choices")
    if not choices:
        return "", None  # usage-only chunks
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    text = delta.get("content") if isinstance(delta, dict) else None
    return (text if isinstance(text, str) else ""), choice.get("finish_reason")
