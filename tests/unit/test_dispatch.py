"""The supervisor's dispatcher (app/dispatch.py): each connection to the ready worker with the
fewest sessions, equal ones in turn; a worker that is not ready, has gone or stopped taking
sockets gets none. Workers here are ConnectionReceivers in one event loop, as in a real worker."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from voice_pipeline.app.dispatch import ConnectionReceiver, Dispatcher, least_loaded


def test_least_loaded_takes_the_smallest_and_equal_ones_in_turn():
    assert least_loaded([2, 1, 1], 0) == 1 and least_loaded([2, 1, 1], 2) == 2
    assert least_loaded([None, 3, None], 0) == 1 and least_loaded([None, None], 1) is None
    assert least_loaded([0, 0, 0], 3 % 3) == 0 and least_loaded([0, 0, 0], 1) == 1


class _Worker:
    """A worker's served connections: each answers with the worker's name."""

    def __init__(self, name: str) -> None:
        self.name, self.served = name, 0

    def protocol(self) -> asyncio.Protocol:
        worker = self

        class Answer(asyncio.Protocol):
            def connection_made(self, transport):
                worker.served += 1
                transport.write(worker.name.encode())
                transport.close()

        return Answer()


async def _connect(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    name = (await asyncio.wait_for(reader.read(), 10)).decode()
    writer.close()
    return name


@pytest.fixture
def dispatcher():
    listener = socket.create_server(("127.0.0.1", 0))
    running = Dispatcher(listener, 3)
    running.start()
    yield running, listener.getsockname()[1]
    running.close()


async def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_connections_go_to_the_ready_worker_with_the_fewest_sessions(dispatcher):
    running, port = dispatcher
    workers = [_Worker(name) for name in "abc"]
    receivers = []
    for index, worker in enumerate(workers):
        receiver = ConnectionReceiver(running.attach(index).detach(), worker.protocol)
        receiver.start()
        receivers.append(receiver)
    running.set_ready(0)
    running.set_ready(1)  # c is still loading
    names = [await _connect(port) for _ in range(4)]
    assert sorted(names) == ["a", "a", "b", "b"], "equal workers take turns; a loading one gets none"

    receivers[0].sessions_changed(3)  # a holds three sessions now
    running.set_ready(2)
    await _until(lambda: running.loads()[0] == 3)
    names = [await _connect(port) for _ in range(4)]
    assert names.count("a") == 0 and sorted(names) == ["b", "b", "c", "c"]

    running.detach(1)  # b has exited
    receivers[1].close()
    assert [await _connect(port) for _ in range(2)] == ["c", "c"], "a still holds three sessions"
    assert running.loads()[1] is None
    for receiver in receivers:
        receiver.close()


async def test_a_worker_that_has_gone_is_skipped_and_a_connection_is_not_lost(dispatcher):
    running, port = dispatcher
    gone = running.attach(0)
    gone.close()  # its process died before the supervisor noticed
    alive = _Worker("b")
    receiver = ConnectionReceiver(running.attach(1).detach(), alive.protocol)
    receiver.start()
    running.set_ready(0)
    running.set_ready(1)
    assert [await _connect(port) for _ in range(3)] == ["b", "b", "b"]
    receiver.close()
