"""`serve` survives its own death: the supervisor starts a new worker after a native crash and
the new worker says so in /ready and /metrics. A worker that cannot start is not restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from voice_pipeline.app.supervisor import Supervisor, describe_exit
from voice_pipeline_client.realtime import RealtimeClient

from .conftest import VOICE_PIPELINE, start_server, stop_server

pytestmark = pytest.mark.integration


def _worker_pid(server) -> int:
    return json.loads(server.get("/health")[1])["pid"]


def _wait_ready_with_new_worker(server, old_pid: int, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.process.poll() is None, "the supervisor itself must stay up"
        try:
            status, body = server.get("/ready")
            if status == 200 and _worker_pid(server) != old_pid:
                return json.loads(body)
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"no new worker in time:\n{server.log_path.read_text()[-3000:]}")


async def test_a_crashed_worker_is_restarted_counted_and_answers(tmp_path):
    server = start_server(tmp_path)
    try:
        pid = _worker_pid(server)
        assert pid != server.process.pid, "serve runs the server in a supervised worker"
        os.kill(pid, signal.SIGABRT)  # what a failed GGML_ASSERT does to the process
        ready = _wait_ready_with_new_worker(server, pid)
        assert ready["worker"] == {"restarts": 1, "last_exit": "SIGABRT"}
        metrics = server.get("/metrics")[1]
        assert "vp_worker_restarts_total 1.0" in metrics
        async with RealtimeClient(server.ws) as client:
            await client.start()
            await client.send({"type": "conversation.item.create",
                               "item": {"type": "message", "role": "user",
                                        "content": [{"type": "input_text", "text": "Hello there."}]}})
            done = await client.wait_for("response.done", timeout_s=120)
        assert done["status"] == "completed"
        assert "SIGABRT" in server.log_path.read_text()
    finally:
        stop_server(server)
    assert server.process.returncode == 0, "SIGTERM reaches the worker, which drains and exits"


def test_a_worker_that_fails_before_ready_is_not_restarted(tmp_path):
    result = subprocess.run([VOICE_PIPELINE, "serve", "--port", "not-a-port"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    result = subprocess.run(
        [VOICE_PIPELINE, "serve"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "VP_STT_ENCODER_WINDOW": "nonsense", "VP_SERVER_PORT": "0"},
    )
    assert result.returncode != 0
    assert "not restarting" in result.stderr


def test_supervisor_restarts_a_worker_that_died_after_ready():
    """Fake workers: the first is ready, then dies by SIGSEGV; the second is told why, then waits
    for the SIGTERM the supervisor passes on."""
    script = (
        "import os, signal, time\n"
        "from voice_pipeline.app.supervisor import signal_ready\n"
        "signal_ready()\n"
        "if os.environ['VOICE_PIPELINE_WORKER_RESTARTS'] == '0':\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "assert os.environ['VOICE_PIPELINE_WORKER_LAST_EXIT'] == 'SIGSEGV'\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor([sys.executable, "-c", script])

    def stop_the_second_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            child = supervisor._child
            if supervisor.restarts == 1 and child is not None and child.poll() is None:
                time.sleep(0.5)  # let it get past its assertion
                supervisor._forward(signal.SIGTERM, None)
                return
            time.sleep(0.05)

    threading.Thread(target=stop_the_second_worker, daemon=True).start()
    assert supervisor.run() == 0
    assert supervisor.restarts == 1 and supervisor.last_exit == "SIGSEGV"
    assert describe_exit(-signal.SIGABRT) == "SIGABRT" and describe_exit(3) == "exit 3"


def test_workers_run_numpys_blas_on_one_thread_unless_the_operator_says_otherwise(monkeypatch):
    """A second OpenBLAS thread spins after each call, taking a core from the models under load.
    The fake worker exits (before it is ready, so it is not restarted) with 10 + its BLAS threads."""
    script = (
        "import ctypes, sys, numpy\n"
        "path = next(line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line)\n"
        "sys.exit(10 + ctypes.CDLL(path).scipy_openblas_get_num_threads64_())\n"
    )
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert Supervisor([sys.executable, "-c", script]).run() == 11
    if (os.cpu_count() or 1) >= 2:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
        assert Supervisor([sys.executable, "-c", script]).run() == 12
