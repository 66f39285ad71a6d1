"""Blocking model calls in worker threads: generators consumed as async iterators, and pools of
non-thread-safe native resources that only the thread using one can give back.

The generator is created *and* iterated in the same worker thread, never on the event loop.
Items cross to the loop through a bounded queue, so a slow consumer holds the producer back.
Closing the async iterator (or cancelling its consumer) stops the producer at its next item.

Cancelling an asyncio task does not stop a thread that is inside a native call. So a resource
(a llama.cpp context) is returned to its `ThreadOwnedPool` by the worker thread itself, after the
call has returned; no `finally` on the event loop, however often it is cancelled, can hand it on
while a thread still uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import AsyncGenerator, Callable, Generic, Iterable, Sequence, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def iterate_in_thread(
    make_iterable: Callable[[], Iterable[T]],
    executor: Executor | None = None,
    max_buffered: int = 16,
    on_thread_exit: Callable[[], None] | None = None,
) -> AsyncGenerator[T, None]:
    """Iterate `make_iterable()` in a worker thread. `on_thread_exit` runs in that thread once the
    iteration has ended and the iterator is closed, whatever happened to the consumer."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(max_buffered)
    stop = threading.Event()

    def put(item: object) -> None:
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()
            return
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
            try:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            finally:
                if on_thread_exit is not None:
                    on_thread_exit()
                put(_DONE)

    try:
        worker = loop.run_in_executor(executor, produce)
    except BaseException:  # never started (executor shut down): the caller's resource is free again
        if on_thread_exit is not None:
            on_thread_exit()
        raise
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.exc
            yield cast(T, item)  # everything else in the queue came from the iterable
    finally:
        stop.set()
        # Drain so a producer blocked on a full queue can see `stop` and finish.
        while not queue.empty():
            queue.get_nowait()
        if not worker.done():
            # Waiting keeps a cancelled consumer from racing ahead of its thread; a second
            # cancellation may cut the wait short, which is safe: the thread releases what it holds.
            await asyncio.shield(worker)


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread `nice` steps less important to the CPU scheduler (Linux: a thread
    has its own nice value). Lowering needs no privilege; a platform without it is left as is."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


class ThreadOwnedPool(Generic[R]):
    """Resources that one thread at a time may use (llama.cpp contexts), each lent to a worker thread.

    `run(fn)` and `stream(fn)` wait for a free resource, then call `fn(resource)` in a worker
    thread. The thread gives the resource back when `fn` (and, for `stream`, the iteration) has
    returned: the release cannot come from the event loop's side, so cancelling the caller any
    number of times never lets two threads into one resource. The free list is guarded by a lock
    and each waiter is woken on its own event loop, so one pool serves any loop (tests make many).
    """

    def __init__(self, resources: Sequence[R], thread_name_prefix: str, nice: int = 0) -> None:
        """`nice` > 0: the worker threads run at that lower CPU priority (work nobody waits on yet)."""
        if not resources:
            raise ValueError("a pool needs at least one resource")
        self.resources = list(resources)
        self._executor = ThreadPoolExecutor(max_workers=len(self.resources), thread_name_prefix=thread_name_prefix,
                                            initializer=(lambda: lower_thread_priority(nice)) if nice > 0 else None)
        self._lock = threading.Lock()
        self._free: deque[R] = deque(self.resources)
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[R]]] = deque()
        self._urgent_waiting = 0  # the first waiters are urgent ones, in their own arrival order

    @property
    def free_count(self) -> int:
        with self._lock:
            return len(self._free)

    async def run(self, fn: Callable[[R], T]) -> T:
        resource = await self._acquire()
        release = self._releaser(resource)

        def call() -> T:
            try:
                return fn(resource)
            finally:
                release()

        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        except BaseException:
            release()
            raise
        # Cancelling this await leaves the thread running; it still releases the resource itself.
        return await future

    async def stream(self, fn: Callable[[R], Iterable[T]], max_buffered: int = 16,
                     urgent: bool = False) -> AsyncGenerator[T, None]:
        """`urgent`: wait ahead of every non-urgent waiter (someone is waiting to hear this one)."""
        resource = await self._acquire(urgent)
        # No await between acquiring and starting the thread: from here the thread owns `resource`.
        items = iterate_in_thread(lambda: fn(resource), self._executor, max_buffered, self._releaser(resource))
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()

    def close(self, wait: bool = True) -> None:
        """No new calls; `wait` for the running ones to return."""
        self._executor.shutdown(wait=wait, cancel_futures=True)

    async def _acquire(self, urgent: bool = False) -> R:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free and not self._waiters:
                return self._free.popleft()
            waiter: asyncio.Future[R] = loop.create_future()
            if urgent:
                self._waiters.insert(self._urgent_waiting, (loop, waiter))
                self._urgent_waiting += 1
            else:
                self._waiters.append((loop, waiter))
        try:
            resource: R = await waiter
            return resource
        except asyncio.CancelledError:
            with self._lock:
                with contextlib.suppress(ValueError):
                    index = self._waiters.index((loop, waiter))
                    del self._waiters[index]
                    if index < self._urgent_waiting:
                        self._urgent_waiting -= 1
            if waiter.done() and not waiter.cancelled():  # handed a resource just as it was cancelled
                self._put_back(waiter.result())
            raise

    def _releaser(self, resource: R) -> Callable[[], None]:
        """A callable, safe from any thread, that puts `resource` back exactly once."""
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self._put_back(resource)

        return release

    def _put_back(self, resource: R) -> None:
        """From any thread: hand `resource` to the first waiter (urgent ones first, each kind in
        arrival order; on its own loop), or free it."""
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                self._urgent_waiting = max(0, self._urgent_waiting - 1)
                try:
                    loop.call_soon_threadsafe(self._hand_over, waiter, resource)
                    return
                except RuntimeError:  # that waiter's loop is closed: try the next one
                    continue
            self._free.append(resource)

    def _hand_over(self, waiter: asyncio.Future[R], resource: R) -> None:
        if waiter.done():  # cancelled after it was chosen: the next waiter gets it
            self._put_back(resource)
        else:
            waiter.set_result(resource)
