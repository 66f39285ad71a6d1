"""Run blocking model generators in a worker thread and consume them as async iterators.

The generator is created *and* iterated in the same worker thread, never on the event loop.
Items cross to the loop through a bounded queue, so a slow consumer holds the producer back.
Closing the async iterator (or cancelling its consumer) stops the producer at its next item.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor
from typing import AsyncIterator, Callable, Iterable, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def iterate_in_thread(
    make_iterable: Callable[[], Iterable[T]],
    executor: Executor | None = None,
    max_buffered: int = 16,
) -> AsyncIterator[T]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(max_buffered)
    stop = threading.Event()

    def put(item: object) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                future.result(timeout=0.1)
                return
            except TimeoutError:
                continue
        future.cancel()

    def produce() -> None:
        iterator = None
        try:
            iterator = iter(make_iterable())
            for item in iterator:
                if stop.is_set():
                    break
                put(item)
        except BaseException as exc:  # handed to the consumer, re-raised there
            put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            put(_DONE)

    worker = loop.run_in_executor(executor, produce)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        # Drain so a producer blocked on a full queue can see `stop` and finish.
        while not queue.empty():
            queue.get_nowait()
        if not worker.done():
            await asyncio.shield(worker)
