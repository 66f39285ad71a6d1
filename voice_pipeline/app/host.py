"""The session host: admission, registry and lifetime of every conversation, for every transport.

The browser socket, the media streams and SIP all get their sessions here: `refusal()` says
whether one more fits (`not_ready` while the models load, `server_busy` at `max_sessions` or while
the measured latency is above its target: app/capacity.py), and
`async with host.session(prefix, make_sink)` registers a Session, runs it on its sink, and on
leaving the block cancels it, waits for it, and unregisters it. `drain()` (on SIGTERM) refuses
new sessions (`server_draining`) and waits for the turns and replies in progress to finish. A session that died of a bug is
counted (`internal_error`) and logged by type; nothing a transport does can leave one behind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from voice_pipeline.app.capacity import Capacity
from voice_pipeline.app.loop_lag import LoopLag
from voice_pipeline.app.settings import Settings
from voice_pipeline.metrics import PipelineMetrics
from voice_pipeline.protocol.commands import StartSession
from voice_pipeline.session.outbox import Sink
from voice_pipeline.session.engines import Engines
from voice_pipeline.session.session import Session

log = logging.getLogger("voice_pipeline.host")


class SessionHost:
    def __init__(self, settings: Settings, metrics: PipelineMetrics, engines: Engines | None = None) -> None:
        self.settings, self.metrics = settings, metrics
        self.engines = engines  # None until the models are loaded: every session is refused
        self.sessions: dict[str, Session] = {}
        self.draining = False  # stopping: no new sessions, replies in progress are finished
        self.count_listeners: list[Callable[[int], None]] = []  # told the session count when it changes
        self._numbers = itertools.count(1)
        self.loop_lag = LoopLag()  # sampled while the server runs (PipelineServer.app)
        self.capacity = Capacity.from_settings(settings, self.loop_lag)  # the door below the max_sessions ceiling
        metrics.turn_listeners.append(self.capacity.observe_turn)
        metrics.admission_open.set_function(lambda: float(self.capacity.admits()))
        metrics.admission_p90_seconds.set_function(self._p90_s)
        metrics.event_loop_lag_seconds.set_function(self._loop_lag_s)

    def refusal(self, reserved: int = 0) -> str | None:
        """Why one more session cannot start now (an error code), or None. `reserved`: places
        promised to sessions not registered yet (SIP calls being answered)."""
        if self.draining:
            return "server_draining"
        if self.engines is None:
            return "not_ready"
        if len(self.sessions) + reserved >= self.settings.server.max_sessions:
            return "server_busy"
        if self.sessions and not self.capacity.admits():  # an empty worker always takes one
            return "server_busy"
        return None

    def _counted(self) -> None:
        for listener in self.count_listeners:
            listener(len(self.sessions))

    def _p90_s(self) -> float:
        p90_ms = self.capacity.p90_ms()
        return math.nan if p90_ms is None else p90_ms / 1000.0

    def _loop_lag_s(self) -> float:
        lag_ms = self.loop_lag.p90_ms()
        return math.nan if lag_ms is None else lag_ms / 1000.0

    def refusal_message(self, code: str, reserved: int = 0) -> str:
        """What a refused client is told: why there is no room (figures only, nothing anyone said)."""
        if code == "not_ready":
            return "models are still loading"
        if code == "server_draining":
            return "the server is stopping"
        if len(self.sessions) + reserved >= self.settings.server.max_sessions:
            return f"the server is at its limit of {self.settings.server.max_sessions} sessions"
        return self.capacity.reason()

    async def drain(self, timeout_s: float) -> int:
        """Refuse new sessions and wait (at most `timeout_s`) until no session is in the middle of a
        turn or a reply; returns how many still were when the time ran out."""
        self.draining = True
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (busy := sum(session.busy for session in self.sessions.values())) and (
                asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.05)
        return busy

    @asynccontextmanager
    async def session(self, prefix: str, make_sink: Callable[[Session], Sink],
                      start: Mapping[str, Any] | None = None) -> AsyncIterator[tuple[Session, asyncio.Task[None]]]:
        """A registered Session running on `make_sink(session)` until the block exits; started with
        `start` as its config when given (phones), else it waits for the client's session.start."""
        if self.engines is None:
            raise RuntimeError("no session before the engines are loaded: check refusal() first")
        session = Session(f"{prefix}{next(self._numbers)}", self.settings, self.engines, self.metrics)
        self.sessions[session.session_id] = session
        self._counted()
        runner = asyncio.create_task(session.run(make_sink(session)), name=f"session {session.session_id}")
        try:
            if start is not None:
                await session.handle(StartSession(start))
            yield session, runner
        finally:
            runner.cancel()
            results = await asyncio.gather(runner, return_exceptions=True)
            if isinstance(results[0], Exception):
                self.metrics.errors.labels("internal_error").inc()
                log.error("session %s stopped by %s", session.session_id, type(results[0]).__name__,
                          exc_info=results[0] if log.isEnabledFor(logging.DEBUG) else None)
            self.sessions.pop(session.session_id, None)
            self._counted()
            if not self.sessions:  # the latency measured described a load that has gone
                self.capacity.clear()
            log.info("session %s closed", session.session_id)
