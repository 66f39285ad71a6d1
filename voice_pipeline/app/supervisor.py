"""`serve`'s supervisor: runs the server as worker processes and starts each again if it crashes.

A native library (llama.cpp, onnxruntime, CTranslate2) that aborts or faults takes its whole
process with it; Python cannot catch that. So `voice-pipeline serve` runs the server in a child
process and waits. If the child dies after it was ready (a signal such as SIGSEGV or SIGABRT, or
any unexpected exit), the supervisor logs it, waits a short backoff and starts a new one, which
reports the count and the last cause in /ready and /metrics (`vp_worker_restarts_total`). A child
that fails before it is ready (bad settings, port in use) is not restarted: its exit code is
returned. SIGTERM and SIGINT are passed to the child, which drains and exits; then so does this.
A worker still running `STOP_GRACE_S` later (stuck in a native call) is killed, so a stop never hangs.

`server.workers` > 1 starts that many workers on the same port, so the pipeline uses every core:
each binds it with SO_REUSEPORT and the kernel spreads new connections over them; with
`server.balance = "sessions"` the supervisor listens instead, and its `Dispatcher` hands each new
connection to the ready worker with the fewest sessions (app/dispatch.py). Each worker admits up
to `server.max_sessions` and says "full" in /ready when it is (docs/scaling.md).
With `llm.serving = "child"` (or `"server"`) the llama.cpp servers (or the one llama-server) are
children of the supervisor, shared by the workers (engines/llama_server.py).

The child learns it is supervised from VOICE_PIPELINE_WORKER_* environment variables (see `WorkerInfo`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voice_pipeline.app.dispatch import ENV_DISPATCH_FD, Dispatcher
from voice_pipeline.errors import ConfigError
from voice_pipeline.processes import describe_exit, die_with_parent

if TYPE_CHECKING:
    from voice_pipeline.app.settings import Settings

log = logging.getLogger("voice_pipeline.app.supervisor")
ENV_RESTARTS = "VOICE_PIPELINE_WORKER_RESTARTS"  # not VP_*: those are settings
ENV_LAST_EXIT = "VOICE_PIPELINE_WORKER_LAST_EXIT"
ENV_READY_FD = "VOICE_PIPELINE_WORKER_READY_FD"
ENV_WORKERS = "VOICE_PIPELINE_WORKER_COUNT"  # how many workers share the port
ENV_INDEX = "VOICE_PIPELINE_WORKER_INDEX"
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # after crash 1, 2, 3, ...; back to the start after a stable hour
STABLE_S = 3600.0
STOP_GRACE_S = 30.0  # after passing on SIGTERM: a worker still running then (a hung native call) is killed
# A worker's environment unless the operator's sets them. numpy's OpenBLAS on one thread: its only
# heavy use here is whisper's log-mel features (small matrices), and a second BLAS thread keeps
# spinning after each call: at 6 sessions on 2 cores it took 0.18 of them (docs/scaling.md).
WORKER_ENV_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class WorkerInfo:
    """What a supervised worker knows about the workers before it."""

    restarts: int = 0
    last_exit: str = ""  # "SIGSEGV", "exit 1", ... ("" if this is the first worker)
    count: int = 1  # workers sharing the port
    index: int = 0

    @classmethod
    def from_env(cls) -> "WorkerInfo":
        def number(name: str, default: int) -> int:
            try:
                return max(0, int(os.environ.get(name, str(default))))
            except ValueError:
                return default

        return cls(number(ENV_RESTARTS, 0), os.environ.get(ENV_LAST_EXIT, ""), max(1, number(ENV_WORKERS, 1)),
                   number(ENV_INDEX, 0))


def signal_ready() -> None:
    """Called by the worker once it serves: from now on a death is a crash worth a restart."""
    fd = os.environ.get(ENV_READY_FD)
    if fd is None:
        return
    try:
        os.write(int(fd), b"R")
        os.close(int(fd))
    except (OSError, ValueError):
        pass
    os.environ.pop(ENV_READY_FD, None)


@dataclass
class _Worker:
    """One worker place: its process, the pipe it says "ready" on, and its crash count."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready: bool = False
    started_t: float = 0.0
    crashes_in_row: int = 0
    restart_at: float | None = None  # when to start it again after a crash


class Supervisor:
    """Runs `workers` copies of the worker process (sharing the port through `dispatcher`, when
    given) and starts each one again, on its own backoff, if it dies after it was ready."""

    def __init__(self, worker_argv: list[str], workers: int = 1, env: dict[str, str] | None = None,
                 dispatcher: Dispatcher | None = None) -> None:
        self.worker_argv = worker_argv
        self.dispatcher = dispatcher
        self.env = dict(env or {})  # extra environment for every worker (where the model servers are)
        self.restarts = 0  # in this supervisor's life, reported by the workers
        self.last_exit = ""
        self._workers = [_Worker(index) for index in range(max(1, workers))]
        self._stopping = False
        self._stop_deadline: float | None = None
        self._stop_code = 0  # a worker that ended badly while stopping

    @property
    def _child(self) -> subprocess.Popen[bytes] | None:
        """The first worker's process (the only one with `workers=1`)."""
        return self._workers[0].process

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        if self.dispatcher is not None:
            self.dispatcher.start()
        for worker in self._workers:
            self._start(worker)
        try:
            while True:
                code = self._step()
                if code is not None:
                    return code
                time.sleep(0.05)
        finally:
            self._stop_all()
            if self.dispatcher is not None:
                self.dispatcher.close()

    def _step(self) -> int | None:
        """One look at every worker; an exit code once the supervisor should end."""
        now = time.monotonic()
        for worker in self._workers:
            process = worker.process
            if process is None:
                if worker.restart_at is not None and now >= worker.restart_at and not self._stopping:
                    self._start(worker)
                continue
            self._read_ready(worker)
            returncode = process.poll()
            if returncode is None:
                self._kill_if_overdue(process)
                continue
            self._close_ready(worker)
            worker.process = None
            if self.dispatcher is not None:
                self.dispatcher.detach(worker.index)
            if self._stopping:
                if returncode not in (0, -signal.SIGTERM, -signal.SIGINT) and not self._stop_code:
                    self._stop_code = returncode
                continue
            if not worker.ready:
                log.error("worker failed before it was ready (%s); not restarting", describe_exit(returncode))
                self._forward(signal.SIGTERM, None)
                return returncode if returncode > 0 else 1
            self._crashed(worker, process.pid, returncode, now)
        if self._stopping and all(w.process is None for w in self._workers):
            return self._stop_code
        return None

    def _crashed(self, worker: _Worker, pid: int, returncode: int, now: float) -> None:
        if now - worker.started_t > STABLE_S:
            worker.crashes_in_row = 0
        self.restarts += 1
        worker.crashes_in_row += 1
        self.last_exit = describe_exit(returncode)
        backoff_s = BACKOFF_S[min(worker.crashes_in_row, len(BACKOFF_S)) - 1]
        log.error("worker %d died (%s); restart %d in %.1f s", pid, self.last_exit, self.restarts, backoff_s)
        worker.restart_at = now + backoff_s

    def _start(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        env = {**WORKER_ENV_DEFAULTS, **os.environ, **self.env,
               ENV_RESTARTS: str(self.restarts), ENV_LAST_EXIT: self.last_exit, ENV_READY_FD: str(write_fd),
               ENV_WORKERS: str(len(self._workers)), ENV_INDEX: str(worker.index)}
        channel = self.dispatcher.attach(worker.index) if self.dispatcher is not None else None
        if channel is not None:
            env[ENV_DISPATCH_FD] = str(channel.fileno())
        inherited = (write_fd,) if channel is None else (write_fd, channel.fileno())
        try:
            worker.process = subprocess.Popen(self.worker_argv, env=env, pass_fds=inherited, preexec_fn=die_with_parent)
        finally:
            os.close(write_fd)
            if channel is not None:
                channel.close()
        worker.ready_fd, worker.ready, worker.restart_at = read_fd, False, None
        worker.started_t = time.monotonic()

    def _read_ready(self, worker: _Worker) -> None:
        """One byte when the worker is ready; end of file (or nothing yet) otherwise."""
        if worker.ready_fd is None:
            return
        try:
            data = os.read(worker.ready_fd, 1)
        except BlockingIOError:
            return
        worker.ready = data == b"R"
        self._close_ready(worker)
        if worker.ready and self.dispatcher is not None:
            self.dispatcher.set_ready(worker.index)

    def _close_ready(self, worker: _Worker) -> None:
        if worker.ready_fd is not None:
            if not worker.ready:
                self._read_last_byte(worker)
            os.close(worker.ready_fd)
            worker.ready_fd = None

    @staticmethod
    def _read_last_byte(worker: _Worker) -> None:
        """A worker may say "ready" and exit before we looked: the byte is still in the pipe."""
        assert worker.ready_fd is not None
        try:
            worker.ready = os.read(worker.ready_fd, 1) == b"R"
        except (BlockingIOError, OSError):
            pass

    def _kill_if_overdue(self, process: subprocess.Popen[bytes]) -> None:
        if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
            log.error("worker %d still running %.0f s after the stop signal; killing it", process.pid, STOP_GRACE_S)
            process.kill()

    def _forward(self, signum: int, _frame: object) -> None:
        self._stopping = True
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + STOP_GRACE_S
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signum)

    def _stop_all(self) -> None:
        """Leaving run() for any reason: no worker is left behind."""
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            self._close_ready(worker)


def worker_count(configured: int) -> int:
    """`server.workers`, with 0 meaning one worker per four cores (each worker's engines use several)."""
    return configured if configured > 0 else max(1, (os.cpu_count() or 1) // 4)


def supervise(worker_args: list[str]) -> int:
    """Run `voice-pipeline serve WORKER_ARGS --worker` under a supervisor; returns the exit code.

    With `llm.serving = "child"` or `"server"` the llama.cpp server(s) start first, here, and every
    worker is told their URLs; they outlive any worker crash and are restarted on their own if they die."""
    from voice_pipeline.app.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = next((a.split("=", 1)[1] for a in worker_args if a.startswith("--config=")), None)
    settings = Settings.load(config)
    workers = worker_count(settings.server.workers)
    dispatcher = None
    if settings.server.balance not in ("sessions", "kernel"):
        print(f"voice-pipeline: server.balance must be 'sessions' or 'kernel', not {settings.server.balance!r}",
              file=sys.stderr, flush=True)
        return 2
    if workers > 1 and settings.server.balance == "kernel" and not any(a.startswith("--port=") for a in worker_args) \
            and settings.server.port == 0:
        worker_args = [*worker_args, f"--port={_free_port(settings.server.host)}"]  # all workers on one port
    if workers > 1 and settings.server.balance == "sessions":  # the supervisor listens and hands connections out
        try:
            dispatcher, worker_args = _listen(settings, worker_args, workers)
        except (ConfigError, OSError) as exc:
            print(f"voice-pipeline: {exc}", file=sys.stderr, flush=True)
            return 2
    argv = [sys.executable, "-m", "voice_pipeline.app.cli", "serve", *worker_args, "--worker"]
    servers = None
    env: dict[str, str] = {}
    if settings.capabilities.llm and settings.llm.serving in ("child", "server"):
        from voice_pipeline.engines.llama_server import ENV_LLM_URLS, ModelServers
        from voice_pipeline.engines.registry import system_prompt

        from voice_pipeline.errors import EngineError

        count = 1 if settings.llm.serving == "server" else settings.llm.instances  # llama-server: N slots in one
        try:
            servers = ModelServers(settings.llm, count, system_prompt=system_prompt(settings.llm.system_prompt_file),
                                   kind=settings.llm.serving)
            env[ENV_LLM_URLS] = ",".join(servers.start())
        except (ConfigError, EngineError) as exc:  # no binary, a server that exits at start: no workers
            if servers is not None:
                servers.stop()
            print(f"voice-pipeline: {exc}", file=sys.stderr, flush=True)
            if dispatcher is not None:
                dispatcher.close()
            return 2
    try:
        return Supervisor(argv, workers, env, dispatcher).run()
    finally:
        if servers is not None:
            servers.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _listen(settings: Settings, worker_args: list[str], workers: int) -> tuple[Dispatcher, list[str]]:
    """The port every worker serves, bound here (its exposure checked first), with its dispatcher;
    the workers' arguments name the port actually bound (port 0: a free one)."""
    from voice_pipeline.security.exposure import enforce

    def arg(name: str) -> str | None:
        return next((a.split("=", 1)[1] for a in worker_args if a.startswith(f"--{name}=")), None)

    settings.server.host = arg("host") or settings.server.host
    settings.server.port = int(arg("port") or settings.server.port)
    enforce(settings.server)  # as the worker does before binding: nothing exposed without its protection
    family = socket.AF_INET6 if ":" in settings.server.host else socket.AF_INET
    listener = socket.create_server((settings.server.host, settings.server.port), family=family, backlog=1024)
    port = listener.getsockname()[1]
    worker_args = [a for a in worker_args if not a.startswith("--port=")] + [f"--port={port}"]
    return Dispatcher(listener, workers), worker_args
