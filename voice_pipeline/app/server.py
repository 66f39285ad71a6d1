"""The aiohttp server: /v1/realtime (WebSocket), /health, /ready, /metrics and the browser client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voice_pipeline.app.dispatch import ENV_DISPATCH_FD, ConnectionReceiver
from voice_pipeline.app.host import SessionHost
from voice_pipeline.app.realtime_ga import GaConnection
from voice_pipeline.app.settings import Settings
from voice_pipeline.app.supervisor import WorkerInfo, signal_ready
from voice_pipeline.errors import ProtocolError
from voice_pipeline.metrics import PipelineMetrics
from voice_pipeline.protocol.events import AudioChunk, ServerEvent
from voice_pipeline.protocol.json_codec import AppendAudio, decode_text, encode_audio, encode_event
from voice_pipeline.session.engines import Engines
from voice_pipeline.session.session import Session
from voice_pipeline.transports.telephony import TelephonyService

log = logging.getLogger("voice_pipeline.app.server")
WEB_DIR = Path(__file__).resolve().parents[2] / "client" / "web"
HARD_MAX_MESSAGE_BYTES = 1 << 20  # beyond this aiohttp closes the socket (1009); below it we answer errors


class WebSocketSink:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    async def send_event(self, event: ServerEvent) -> None:
        await self._ws.send_str(encode_event(event))

    async def send_audio(self, chunk: AudioChunk) -> None:
        await self._ws.send_bytes(encode_audio(chunk))


class PipelineServer:
    def __init__(self, settings: Settings, engines: Engines | None = None) -> None:
        self.settings = settings
        self.metrics = PipelineMetrics()
        self.host = SessionHost(settings, self.metrics, engines)  # every transport's sessions
        self.cold_start: dict[str, float] = {}
        self._started_t = time.monotonic()
        self.telephony = TelephonyService(self.host)
        self.worker = WorkerInfo.from_env()
        self.metrics.worker_restarts.set(self.worker.restarts)

    @property
    def engines(self) -> Engines | None:
        return self.host.engines

    @property
    def sessions(self) -> dict[str, Session]:
        return self.host.sessions

    def app(self) -> web.Application:
        from voice_pipeline.security.gate import Gate

        app = web.Application()
        app.cleanup_ctx.append(self._sample_loop_lag)
        Gate(self.settings.server).install(app)  # Origin, tokens and signatures before any handler (docs/security.md)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/v1/realtime", self.realtime)
        self.telephony.add_routes(app)
        if WEB_DIR.is_dir():
            app.router.add_get("/", self.index)
            app.router.add_static("/static/", WEB_DIR)
        return app

    async def _sample_loop_lag(self, _app: web.Application) -> AsyncIterator[None]:
        """The event loop's lag is sampled for as long as the app runs (admission, /metrics)."""
        sampler = asyncio.create_task(self.host.loop_lag.run(), name="loop-lag")
        yield
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)

    async def load(self) -> None:
        from voice_pipeline.app.compose import load_engines

        self.host.engines, timings = await load_engines(self.settings)
        self.cold_start = {**timings, "process_to_ready_ms": round(1000 * (time.monotonic() - self._started_t), 1)}

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pid": os.getpid()})

    async def ready(self, _request: web.Request) -> web.Response:
        if self.engines is None or self.host.draining:  # a load balancer stops sending here
            return web.json_response({"ready": False, "draining": self.host.draining}, status=503)
        if self.host.refusal() == "server_busy":  # full: a load balancer sends the next session elsewhere
            return web.json_response({"ready": False, "full": True, "reason": "server_busy",
                                      "message": self.host.refusal_message("server_busy"),
                                      "sessions": len(self.sessions)}, status=503)
        worker = {"restarts": self.worker.restarts, "last_exit": self.worker.last_exit}
        return web.json_response({"ready": True, "sessions": len(self.sessions), "cold_start": self.cold_start,
                                  "worker": worker})

    async def prometheus(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def realtime(self, request: web.Request) -> web.WebSocketResponse:
        ga = GaConnection.for_request(request)  # an OpenAI Realtime client (docs/protocol.md); None: ours
        ws = web.WebSocketResponse(max_msg_size=HARD_MAX_MESSAGE_BYTES, heartbeat=30.0,
                                   protocols=ga.protocols if ga else ())
        await ws.prepare(request)
        code = self.host.refusal()
        if code is not None:
            await self._refuse(ws, code, self.host.refusal_message(code), close_code=1013)
            return ws
        sink = (lambda _session: ga.sink(ws)) if ga else (lambda _session: WebSocketSink(ws))
        async with self.host.session("s", sink) as (session, runner):
            if ga is not None:
                await ga.start(session)
            if await self._receive(ws, session, runner, ga) == "start_timeout":
                await self._refuse(ws, "session_start_timeout", "no session.start within "
                                   f"{self.settings.server.start_timeout_s:g} s", close_code=1008)
        return ws

    async def _receive(self, ws: web.WebSocketResponse, session: Session, runner: asyncio.Task,
                       ga: GaConnection | None = None) -> str:
        """Feed the socket's messages to the session until it closes; why it stopped.

        A socket that has not sent `session.start` within `server.start_timeout_s` stops here, so
        connections that never start cannot hold the server's session slots.
        """
        deadline = time.monotonic() + self.settings.server.start_timeout_s
        while not runner.done():
            timeout = None if session.started else max(0.0, deadline - time.monotonic())
            try:
                message = await ws.receive(timeout=timeout)
            except TimeoutError:
                return "start_timeout"
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return "closed"
            await self._on_message(session, message, ga)
        return "session_stopped"

    async def _on_message(self, session: Session, message, ga: GaConnection | None = None) -> None:
        """One client message into the session. Nothing it holds can end the socket: a failure is
        answered with an `error` event, counted and logged (its type only, never its content)."""
        try:
            if ga is not None:  # its text frames may be up to HARD_MAX_MESSAGE_BYTES (base64 audio appends)
                await ga.on_message(session, message)
            else:
                await self._decode_and_handle(session, message)
        except Exception as exc:
            log.warning("session %s: %s while handling a client message", session.session_id, type(exc).__name__,
                        exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
            session.error("internal_error", "the server could not handle this message; the session goes on")

    async def _decode_and_handle(self, session: Session, message) -> None:
        if message.type == WSMsgType.BINARY:
            session.feed_pcm16(message.data)
        elif message.type == WSMsgType.TEXT:
            limit = self.settings.server.max_text_frame_bytes
            # The limit is in bytes: count UTF-8 bytes only when the characters alone could be under it.
            if len(message.data) > limit or (len(message.data) * 4 > limit and len(message.data.encode()) > limit):
                return session.error("text_frame_too_large", f"text frames are limited to {limit} bytes")
            try:
                item = decode_text(message.data)
            except ProtocolError as exc:
                return session.error(exc.code, exc.message, event_type=exc.event_type)
            if isinstance(item, AppendAudio):
                session.feed_pcm16(item.pcm16)
            else:
                await session.handle(item)

    async def _refuse(self, ws: web.WebSocketResponse, code: str, message: str, close_code: int) -> None:
        """An `error` event, then a close: for sockets that get no session (or lose it)."""
        self.metrics.errors.labels(code).inc()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json({"type": "error", "event_id": f"refused_{code}", "error": {
                "type": "server_error", "code": code, "message": message, "recoverable": False}})
        await ws.close(code=close_code, message=code.encode())


async def serve(settings: Settings, ready_event: asyncio.Event | None = None) -> None:
    from voice_pipeline.security.exposure import enforce

    enforce(settings.server)  # before binding or loading anything: ConfigError stops here
    server = PipelineServer(settings)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    # One of several workers with server.balance = "sessions": the supervisor accepts and hands each
    # connection to the worker with the fewest sessions (app/dispatch.py), once this one has loaded.
    receiver = None
    if dispatch_fd := os.environ.pop(ENV_DISPATCH_FD, None):
        receiver = ConnectionReceiver(int(dispatch_fd), runner.server)
        server.host.count_listeners.append(receiver.sessions_changed)
        await server.load()
        receiver.start()
    else:  # alone, or one of several binding the port themselves (server.balance = "kernel": SO_REUSEPORT)
        shared = server.worker.count > 1
        if shared:  # take connections only once loaded (the others serve meanwhile)
            await server.load()
        await web.TCPSite(runner, settings.server.host, settings.server.port, reuse_port=shared or None).start()
        log.info("listening on http://%s:%s%s", settings.server.host, settings.server.port,
                 "" if shared else " (loading models)")
    if server.engines is None:
        await server.load()
    await server.telephony.start()
    print(f"voice-pipeline: ready on http://{settings.server.host}:{settings.server.port} "
          f"(cold start {server.cold_start['process_to_ready_ms'] / 1000:.1f} s)", file=sys.stderr, flush=True)
    if server.worker.restarts:
        log.warning("worker restarted after a crash (%d so far, last: %s)", server.worker.restarts, server.worker.last_exit)
    signal_ready()
    if ready_event is not None:
        ready_event.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)  # `kill -USR1 PID`: where is everything waiting?
    try:
        await stop.wait()
        timeout_s = settings.server.drain_timeout_s
        log.info("stopping: new sessions refused, finishing turns in progress (at most %g s)", timeout_s)
        if busy := await server.host.drain(timeout_s):
            log.warning("stopping with %d session(s) still mid-turn after %g s", busy, timeout_s)
    finally:
        await server.telephony.stop()
        if receiver is not None:
            receiver.close()
        await runner.cleanup()


def log_tasks() -> None:
    """Log every asyncio task with its stack: a diagnostic for a server that seems stuck."""
    buffer = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}: {task.get_coro()!r}", file=buffer)
        task.print_stack(limit=12, file=buffer)
    log.warning("asyncio tasks:\n%s", buffer.getvalue())


def run_server(args: argparse.Namespace) -> int:
    from voice_pipeline.errors import ConfigError

    settings = Settings.load(args.config)
    if args.host:
        settings.server.host = args.host
    if args.port is not None:
        settings.server.port = args.port
    logging.basicConfig(level=settings.server.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"voice-pipeline: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
