"""Client tools, the Realtime way: the model calls a function, the client runs it, the reply continues.

A session's `SessionTools` keeps the one exchange in progress: the calls the model made in a
reply (`ToolExchange`), then the outputs the client sends back (`function_call_output`). A
`response.create` continues the reply with those outputs in the model's context. Per reply, a
`ToolRequest` carries the session's tools to the model that answers (engines/tool_calling.py)
and brings back the calls it made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from voice_pipeline.engines.base import ChatMessage

TOOL_FILLER = "One moment."  # spoken when the model calls a tool before saying anything
MAX_OUTPUT_CHARS = 8000  # a tool's output as the model sees it (longer is cut)


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass
class ToolExchange:
    """One reply's tool calls: the prompt that led to them, what was said, and the outputs so far."""

    prompt: list[ChatMessage]  # the messages of the reply that called (system, history, user)
    said: str  # what the model said before calling (the filler, when it said nothing)
    calls: list[ToolCall]
    outputs: dict[str, str] = field(default_factory=dict)  # call_id -> output

    @property
    def complete(self) -> bool:
        return all(call.call_id in self.outputs for call in self.calls)

    def wire_messages(self) -> list[dict[str, Any]]:
        """The continuation for an OpenAI-compatible model: the prompt, the assistant's calls, the results."""
        calls = [{"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                 for call in self.calls]
        results = [{"role": "tool", "tool_call_id": call.call_id, "content": self.outputs.get(call.call_id, "")}
                   for call in self.calls]
        return [*wire_messages(self.prompt), {"role": "assistant", "content": self.said or None, "tool_calls": calls},
                *results]

    def plain_messages(self) -> list[ChatMessage]:
        """The same for a model without tool calling (the local fallback): results folded into the user turn."""
        *context, user = self.prompt
        results = "; ".join(f"{call.name}({call.arguments}) returned {self.outputs.get(call.call_id, '')}"
                            for call in self.calls)
        return [*context, ChatMessage("user", f"{user.content}\n\n(Tool results: {results}. Answer with them.)")]


def wire_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": m.content} for m in messages]


class ToolRequest:
    """One reply's tools: what the model may call, and, for a continuation, the exchange it continues."""

    def __init__(self, owner: "SessionTools", tools: Sequence[Mapping[str, Any]], choice: str | Mapping[str, Any],
                 continuing: ToolExchange | None = None) -> None:
        self.tools, self.choice, self.continuing = tools, choice, continuing
        self.made: ToolExchange | None = None  # the calls this reply made
        self._owner = owner

    @property
    def required(self) -> bool:
        return self.choice == "required" or isinstance(self.choice, Mapping)

    def wire_tools(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": tool["name"], "description": tool.get("description", ""),
                                                  "parameters": tool.get("parameters", {})}} for tool in self.tools]

    def wire_choice(self) -> str | dict[str, Any]:
        if isinstance(self.choice, Mapping):
            return {"type": "function", "function": {"name": self.choice.get("name")}}
        return self.choice

    def called(self, exchange: ToolExchange) -> None:
        """The model called tools: the session now waits for their outputs."""
        self.made = exchange
        self._owner.pending = exchange


class SessionTools:
    def __init__(self) -> None:
        self.pending: ToolExchange | None = None  # calls sent to the client, outputs not all back yet

    def request(self, tools: Sequence[Mapping[str, Any]], choice: str | Mapping[str, Any],
                user_text: str | None) -> ToolRequest | None:
        """The tools for the next reply: a new user turn starts afresh; no user text continues the exchange."""
        if user_text is not None:
            self.pending = None
            return ToolRequest(self, tools, choice) if tools and choice != "none" else None
        exchange, self.pending = self.pending, None
        if exchange is None or not exchange.complete:
            return None
        return ToolRequest(self, tools, choice if tools else "none", continuing=exchange)

    def add_output(self, call_id: str, output: str) -> bool:
        """A `function_call_output` from the client; False if no call is waiting for it."""
        exchange = self.pending
        if exchange is None or call_id not in {call.call_id for call in exchange.calls}:
            return False
        exchange.outputs[call_id] = output[:MAX_OUTPUT_CHARS]
        return True

    @property
    def ready(self) -> bool:
        """Every output of the pending calls is in: a `response.create` continues the reply."""
        return self.pending is not None and self.pending.complete


def arguments_text(arguments: object) -> str:
    """Arguments as JSON text whatever the model sent (some servers send an object)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)
