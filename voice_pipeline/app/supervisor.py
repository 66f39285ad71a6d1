"""`serve`'s supervisor: runs the server as a worker process and starts it again if it crashes.

A native library (llama.cpp, onnxruntime, CTranslate2) that aborts or faults takes its whole
process with it; Python cannot catch that. So `voice-pipeline serve` runs the server in a child
process and waits. If the child dies after it was ready (a signal such as SIGSEGV or SIGABRT, or
any unexpected exit), the supervisor logs it, waits a short backoff and starts a new one, which
reports the count and the last cause in /ready and /metrics (`vp_worker_restarts_total`). A child
that fails before it is ready (bad settings, port in use) is not restarted: its exit code is
returned. SIGTERM and SIGINT are passed to the child, which drains and exits; then so does this.
A worker still running `STOP_GRACE_S` later (stuck in a native call) is killed, so a stop never hangs.

The child learns it is supervised from VOICE_PIPELINE_WORKER_* environment variables (see `WorkerInfo`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

log = logging.getLogger("voice_pipeline.app.supervisor")
ENV_RESTARTS = "VOICE_PIPELINE_WORKER_RESTARTS"  # not VP_*: those are settings
ENV_LAST_EXIT = "VOICE_PIPELINE_WORKER_LAST_EXIT"
ENV_READY_FD = "VOICE_PIPELINE_WORKER_READY_FD"
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # after crash 1, 2, 3, ...; back to the start after a stable hour
STABLE_S = 3600.0
STOP_GRACE_S = 30.0  # after passing on SIGTERM: a worker still running then (a hung native call) is killed


@dataclass(frozen=True)
class WorkerInfo:
    """What a supervised worker knows about the workers before it."""

    restarts: int = 0
    last_exit: str = ""  # "SIGSEGV", "exit 1", ... ("" if this is the first worker)

    @classmethod
    def from_env(cls) -> "WorkerInfo":
        try:
            restarts = max(0, int(os.environ.get(ENV_RESTARTS, "0")))
        except ValueError:
            restarts = 0
        return cls(restarts, os.environ.get(ENV_LAST_EXIT, ""))


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


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def _die_with_parent() -> None:
    """In the child before exec: if the supervisor is killed, the worker gets SIGTERM (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    def __init__(self, worker_argv: list[str]) -> None:
        self.worker_argv = worker_argv
        self.restarts = 0  # in this supervisor's life, reported by the workers
        self.crashes_in_row = 0  # picks the backoff; a worker that lived an hour starts it again
        self.last_exit = ""
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._stop_deadline: float | None = None

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        while True:
            started = time.monotonic()
            returncode, was_ready = self._run_worker()
            if self._stopping:
                return 0 if returncode in (0, -signal.SIGTERM, -signal.SIGINT) else returncode
            if not was_ready:
                log.error("worker failed before it was ready (%s); not restarting", describe_exit(returncode))
                return returncode if returncode > 0 else 1
            if time.monotonic() - started > STABLE_S:
                self.crashes_in_row = 0
            self.restarts += 1
            self.crashes_in_row += 1
            self.last_exit = describe_exit(returncode)
            backoff_s = BACKOFF_S[min(self.crashes_in_row, len(BACKOFF_S)) - 1]
            log.error("worker %s died (%s); restart %d in %.1f s", self._child.pid if self._child else "?",
                      self.last_exit, self.restarts, backoff_s)
            if self._sleep_unless_stopped(backoff_s):
                return 0

    def _run_worker(self) -> tuple[int, bool]:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, ENV_RESTARTS: str(self.restarts), ENV_LAST_EXIT: self.last_exit,
               ENV_READY_FD: str(write_fd)}
        self._child = subprocess.Popen(self.worker_argv, env=env, pass_fds=(write_fd,), preexec_fn=_die_with_parent)
        os.close(write_fd)
        try:
            # One byte when the worker is ready; end of file if it exits first.
            was_ready = os.read(read_fd, 1) == b"R"
        except InterruptedError:
            was_ready = False
        finally:
            os.close(read_fd)
        return self._wait(), was_ready

    def _wait(self) -> int:
        assert self._child is not None
        while True:
            try:
                return self._child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                    log.error("worker %d still running %.0f s after the stop signal; killing it",
                              self._child.pid, STOP_GRACE_S)
                    self._child.kill()
                    self._stop_deadline = None

    def _forward(self, signum: int, _frame: object) -> None:
        self._stopping = True
        self._stop_deadline = time.monotonic() + STOP_GRACE_S
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signum)

    def _sleep_unless_stopped(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stopping:
            time.sleep(0.05)
        return self._stopping


def supervise(worker_args: list[str]) -> int:
    """Run `voice-pipeline serve WORKER_ARGS --worker` under a supervisor; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = [sys.executable, "-m", "voice_pipeline.app.cli", "serve", *worker_args, "--worker"]
    return Supervisor(argv).run()
