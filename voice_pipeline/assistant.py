"""The Python API: an assistant in a few lines, served by the same server and transports.

    assistant = Assistant(instructions="You are a helpful barista.")

    @assistant.tool(when=r"where is my order (?P<order_id>\\w+)")
    def order_status(order_id: str) -> str:
        "Where an order is."
        return f"Order {order_id} ships tomorrow."

    @assistant.reply                      # optional: your own LLM or agent framework
    async def reply(messages):            # system prompt, history, the user's turn
        yield "You said: " + messages[-1].content

    @assistant.on("transcript")           # event hooks: any event type, or a short name
    def show(event): print(event.data["transcript"])

    assistant.serve(port=8765)            # or: async with assistant.running() as url: ...

Tools join the built-in ones (arithmetic, units, dates, timers) in one registry; a tool with
`when=` (a regular expression over the normalised utterance, named groups as arguments) answers
on the instant route, and every tool is available to a reply handler as `assistant.tools`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Union, get_type_hints

from voice_pipeline.app.host import SessionHost
from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.protocol.events import AudioChunk, EventKind, ServerEvent
from voice_pipeline.tools import ToolContext, ToolRegistry, builtin_tools, tool_from_function

log = logging.getLogger("voice_pipeline.assistant")

ReplyHandler = Callable[[list[ChatMessage]], Union[AsyncIterator[str], Awaitable[str]]]
Hook = Callable[[ServerEvent], Any]

# Short names for the events most hooks want; any wire event type works too.
EVENT_NAMES = {
    "transcript": EventKind.TRANSCRIPT_FINAL.value,
    "partial": EventKind.TRANSCRIPT_PARTIAL.value,
    "speech_started": EventKind.SPEECH_STARTED.value,
    "reply": EventKind.RESPONSE_DONE.value,
    "reply_text": EventKind.RESPONSE_TEXT_DELTA.value,
    "metrics": EventKind.TURN_METRICS.value,
    "error": EventKind.ERROR.value,
}


class HandlerLLM:
    """A reply handler as a LanguageModel: the pipeline chunks, speaks and interrupts it like any model."""

    name = "python"

    def __init__(self, handler: ReplyHandler) -> None:
        self.handler = handler

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
                     **_: Any) -> AsyncIterator[str]:
        result = self.handler(list(messages))
        if inspect.isawaitable(result):
            text = await result
            if text:
                yield str(text)
            return
        try:
            async for piece in result:
                if piece:
                    yield str(piece)
        finally:
            close = getattr(result, "aclose", None)
            if close is not None:
                await close()

    async def warm_up(self, system_prompt: str) -> None:
        pass


class Hooks:
    """Event hooks; a failing hook is logged and never ends a session. Async hooks run as tasks."""

    def __init__(self) -> None:
        self.by_type: dict[str, list[Hook]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self, kind: str, hook: Hook) -> None:
        self.by_type.setdefault(EVENT_NAMES.get(kind, kind), []).append(hook)

    def dispatch(self, event: ServerEvent) -> None:
        for hook in [*self.by_type.get(event.kind.value, []), *self.by_type.get("*", [])]:
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
            except Exception as exc:
                log.warning("event hook %s failed: %s", getattr(hook, "__name__", hook), type(exc).__name__)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("event hook failed: %s", type(task.exception()).__name__)


class _ObservedSink:
    """A transport's sink, with every event also shown to the hooks (after it was sent)."""

    def __init__(self, inner: Any, hooks: Hooks) -> None:
        self.inner, self.hooks = inner, hooks

    async def send_event(self, event: ServerEvent) -> None:
        await self.inner.send_event(event)
        self.hooks.dispatch(event)

    async def send_audio(self, chunk: AudioChunk) -> None:
        await self.inner.send_audio(chunk)


def _pattern_parser(pattern: str, func: Callable[..., Any]) -> Callable[[str, ToolContext], dict[str, Any] | None]:
    compiled = re.compile(pattern)
    hints = get_type_hints(func)

    def parse(said: str, _context: ToolContext) -> dict[str, Any] | None:
        match = compiled.fullmatch(said)
        if match is None:
            return None
        arguments: dict[str, Any] = {}
        for name, value in match.groupdict().items():
            kind = hints.get(name, str)
            try:
                arguments[name] = kind(value) if kind in (int, float) else value
            except ValueError:
                return None
        return arguments

    return parse


class Assistant:
    def __init__(self, instructions: str | None = None, *, settings: Settings | None = None,
                 builtin: bool = True) -> None:
        """`settings`: as the server reads them (VP_* environment variables, a file); `builtin=False`
        leaves out the built-in tools (arithmetic, units, dates, timers)."""
        self.settings = settings or Settings.load(None)
        self.instructions = instructions
        self.tools: ToolRegistry = builtin_tools() if builtin else ToolRegistry()
        self.hooks = Hooks()
        self._handler: ReplyHandler | None = None

    # -- building it ------------------------------------------------------------------------

    def tool(self, func: Callable[..., Any] | None = None, *, when: str | None = None, name: str | None = None,
             description: str | None = None) -> Any:
        """Register a Python function as a tool (JSON schema from its signature); `when`: answer on the instant route."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            parse = _pattern_parser(when, f) if when else None
            self.tools.add(tool_from_function(f, name=name, description=description, parse=parse))
            return f

        return register(func) if func is not None else register

    def reply(self, handler: ReplyHandler) -> ReplyHandler:
        """Answer every turn no template or tool answers: an async generator of text pieces, or an async str."""
        self._handler = handler
        return handler

    def on(self, kind: str) -> Callable[[Hook], Hook]:
        """Call `hook(event)` for each event of `kind` ("transcript", "reply", "metrics", any event type, or "*")."""

        def register(hook: Hook) -> Hook:
            self.hooks.add(kind, hook)
            return hook

        return register

    # -- running it -------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Load the models, listen, and yield the WebSocket URL (port 0: any free port) until the block ends."""
        from aiohttp import web

        from voice_pipeline.app.server import PipelineServer
        from voice_pipeline.security.exposure import enforce
        from voice_pipeline.transports.telephony import TelephonyService

        settings = self.settings
        settings.server.host, settings.server.port = host, port
        if self._handler is not None:
            settings.capabilities.llm = False  # the handler replaces the local model: do not load it
        enforce(settings.server)
        server = PipelineServer(settings)
        server.host = _ObservedHost(settings, server.metrics, None, self.hooks)
        server.telephony = TelephonyService(server.host)
        await server.load()
        self._customise(server)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1] if runner.addresses else port
        await server.telephony.start()
        log.info("assistant ready on ws://%s:%s/v1/realtime", host, bound_port)
        try:
            yield f"ws://{host}:{bound_port}/v1/realtime"
        finally:
            await server.host.drain(settings.server.drain_timeout_s)
            await server.telephony.stop()
            await runner.cleanup()

    def serve(self, host: str = "127.0.0.1", port: int = 8765) -> None:
        """Serve until interrupted (Ctrl-C)."""

        async def forever() -> None:
            async with self.running(host, port) as url:
                print(f"voice-pipeline assistant: ready on {url}", flush=True)
                await asyncio.Event().wait()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(forever())

    def _customise(self, server: Any) -> None:
        from voice_pipeline.engines.fallback import FallbackLLM

        engines = server.host.engines
        if self.instructions is not None:
            engines.system_prompt = self.instructions
        if self._handler is not None:
            budget_s = self.settings.budgets.llm_first_token_ms / 1000.0
            handler = FallbackLLM([HandlerLLM(self._handler)], first_token_timeout_s=budget_s, name="small")
            engines.llm = handler
            engines.answerer.small, engines.answerer.large = handler, None
        engines.answerer.local_tools = self.tools


class _ObservedHost(SessionHost):
    """The server's SessionHost, with each session's sink shown to the assistant's hooks."""

    def __init__(self, settings: Settings, metrics: Any, engines: Any, hooks: Hooks) -> None:
        super().__init__(settings, metrics, engines)
        self.hooks = hooks

    def session(self, prefix: str, make_sink: Callable[[Any], Any], start: Any = None) -> Any:
        return super().session(prefix, lambda session: _ObservedSink(make_sink(session), self.hooks), start)
