"""The remote OpenAI-compatible model with a session's tools: its text streams, its tool calls are collected.

`ToolCallingLLM` is a LanguageModel (text in, text out) for one reply, so it sits in a
`FallbackLLM` cascade like the plain remote model, with the same budgets and circuit breaker.
The model's `tool_calls` deltas are assembled into `ToolCall`s and handed to the reply's
`ToolRequest`; the reply then sends them to the client. If the model calls a tool before saying
anything, the stream yields a short spoken filler at once, so the user hears the assistant while
the client runs the tool (and the cascade counts the call as the model's first token).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Sequence

from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.engines.openai_compat import OpenAICompatLLM
from voice_pipeline.errors import EngineError
from voice_pipeline.reply.tools import TOOL_FILLER, ToolCall, ToolExchange, ToolRequest, arguments_text, wire_messages

_MAX_CALLS = 8


class ToolCallingLLM:
    def __init__(self, remote: OpenAICompatLLM, request: ToolRequest) -> None:
        self.remote, self.request = remote, request
        self.name = remote.name  # the remote's circuit breaker and metrics apply

    async def warm_up(self, system_prompt: str) -> None:
        await self.remote.warm_up(system_prompt)

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]:
        request = self.request
        wire = request.continuing.wire_messages() if request.continuing else wire_messages(messages)
        extra: dict[str, Any] = {}
        if request.tools:
            extra = {"tools": request.wire_tools(), "tool_choice": request.wire_choice()}
        body = self.remote.request_body(wire, max_tokens, **extra)
        said: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        async for chunk in self.remote.stream_chunks(body):
            delta = _delta(chunk)
            text = delta.get("content")
            if isinstance(text, str) and text:
                said.append(text)
                yield text
            for index, part in _tool_call_parts(delta):
                if not said:  # the model went straight to a tool: say something while it runs
                    said.append(TOOL_FILLER)
                    yield TOOL_FILLER
                call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                function = part.get("function") if isinstance(part.get("function"), dict) else {}
                call["id"] = call["id"] or str(part.get("id") or "")
                call["name"] = call["name"] or str(function.get("name") or "")
                arguments = function.get("arguments")
                if arguments is not None:
                    call["arguments"] += arguments_text(arguments)
        if calls:
            prompt = request.continuing.plain_messages() if request.continuing else list(messages)
            request.called(ToolExchange(prompt, "".join(said).strip(), _finished(calls)))


def _delta(chunk: dict) -> dict:
    choices = chunk["choices"]
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    delta = choice.get("delta")
    return delta if isinstance(delta, dict) else {}


def _tool_call_parts(delta: dict) -> list[tuple[int, dict]]:
    parts = delta.get("tool_calls")
    if not isinstance(parts, list):
        return []
    found = []
    for position, part in enumerate(parts):
        if isinstance(part, dict):
            index = part.get("index", position)
            found.append((index if isinstance(index, int) else position, part))
    return found


def _finished(calls: dict[int, dict[str, str]]) -> list[ToolCall]:
    if len(calls) > _MAX_CALLS:
        raise EngineError("llm", f"the model made more than {_MAX_CALLS} tool calls in one reply")
    finished = []
    for index in sorted(calls):
        call = calls[index]
        if not call["name"]:
            raise EngineError("llm", "the model sent a tool call without a function name")
        finished.append(ToolCall(call["id"] or f"call_{index}", call["name"], call["arguments"] or "{}"))
    return finished
