"""Tools the assistant can call: Python functions with a JSON schema, and how the instant route spots them.

A tool is a function of keyword arguments returning the text to say (or a `ToolResult` that also
asks the session to do something later, like a timer). Built-in tools also carry a parser: it
reads a whole utterance (see `said.canonical`) and returns the arguments, or None when the
utterance is not a request for this tool. Tools without a parser are offered to models that call
tools (their `schema()`), in the OpenAI Realtime function format.
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from voice_pipeline.tools.said import canonical

log = logging.getLogger("voice_pipeline.tools")


@dataclass(frozen=True)
class ToolContext:
    now: datetime  # local wall-clock time, injected (tests pass a fixed one)


@dataclass(frozen=True)
class ToolResult:
    text: str  # what the assistant says
    effect: object | None = None  # for the session, applied once the reply is really given (timers.py)


Parser = Callable[[str, ToolContext], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the keyword arguments
    function: Callable[..., Any]
    parse: Parser | None = None  # canonical utterance -> arguments (the instant route), or None
    takes_context: bool = False  # the function wants `context=ToolContext`

    def call(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        extra = {"context": context} if self.takes_context else {}
        result = self.function(**arguments, **extra)
        return result if isinstance(result, ToolResult) else ToolResult(str(result))

    def schema(self) -> dict[str, Any]:
        """The OpenAI (Realtime and Chat Completions `function`) shape of this tool."""
        return {"type": "function", "name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def add(self, tool: Tool) -> Tool:
        if tool.name in self.tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self.tools[tool.name] = tool
        return tool

    def function(self, func: Callable[..., Any] | None = None, *, name: str | None = None,
                 description: str | None = None, parse: Parser | None = None) -> Any:
        """Register a Python function as a tool (usable as `@registry.function` or `@registry.function(...)`)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add(tool_from_function(f, name=name, description=description, parse=parse))
            return f

        return register(func) if func is not None else register

    def copy(self) -> "ToolRegistry":
        return ToolRegistry(dict(self.tools))

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self.tools.values()]

    def call(self, name: str, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        """Run a tool a model asked for; raises KeyError for an unknown one, TypeError for bad arguments."""
        return self.tools[name].call(arguments, context)

    def answer(self, text: str, context: ToolContext) -> tuple[Tool, ToolResult] | None:
        """The instant route: the first tool whose parser claims the whole utterance answers it."""
        said = canonical(text)
        for tool in self.tools.values():
            if tool.parse is None:
                continue
            arguments = tool.parse(said, context)
            if arguments is None:
                continue
            try:
                return tool, tool.call(arguments, context)
            except Exception as exc:  # a broken tool must not end the turn: the model answers instead
                log.warning("tool %s failed: %s", tool.name, type(exc).__name__)
                return None
        return None


_JSON_TYPES: dict[Any, str] = {int: "integer", float: "number", str: "string", bool: "boolean",
                               list: "array", dict: "object"}


def _json_type(hint: Any) -> dict[str, Any]:
    description = None
    if get_origin(hint) is typing.Annotated:
        hint, *meta = get_args(hint)
        description = next((m for m in meta if isinstance(m, str)), None)
    origin = get_origin(hint)
    schema: dict[str, Any]
    if origin is Literal:
        values = list(get_args(hint))
        schema = {"type": _JSON_TYPES.get(type(values[0]), "string"), "enum": values}
    elif origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        schema = _json_type(options[0]) if len(options) == 1 else {}
    elif origin in (list, tuple, set):
        args = get_args(hint)
        schema = {"type": "array", **({"items": _json_type(args[0])} if args else {})}
    else:
        schema = {"type": _JSON_TYPES[origin or hint]} if (origin or hint) in _JSON_TYPES else {}
    if description:
        schema["description"] = description
    return schema


def tool_from_function(func: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                       parse: Parser | None = None) -> Tool:
    """A Tool whose JSON schema comes from the signature (Annotated[type, "what it is"] for descriptions)."""
    hints = get_type_hints(func, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    takes_context = False
    for param in inspect.signature(func).parameters.values():
        if param.name == "context":
            takes_context = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {func.__name__}: *args and **kwargs have no schema")
        properties[param.name] = _json_type(hints.get(param.name, str))
        if param.default is param.empty:
            required.append(param.name)
    doc = inspect.getdoc(func) or ""
    parameters = {"type": "object", "properties": properties, "required": required}
    return Tool(name or func.__name__, description or doc.split("\n\n")[0].replace("\n", " "), parameters, func,
                parse, takes_context)
