"""Blocking model calls in worker threads: generators consumed as async iterators, and pools of
non-thread-safe native resources that only the thread using one can give back.

The generator is created *and* iterated in a worker thread (one at a time), never on the event loop.
Items cross to the loop through a bounded queue, so a slow consumer holds the producer back.
Closing the async iterator (or cancelling its consumer) stops the producer at its next item.

A pool may also have later threads at a lower CPU priority: while a stream's consumer does not
wait on its next items (a reply whose first piece is written and whose audio is well ahead of its
playback, `can_wait`), the iteration goes on there, so those items yield the CPU to work somebody
is waiting for; it comes back when the consumer waits again.

Cancelling an asyncio task does not stop a thread that is inside a native call. So a resource
(a llama.cpp context) is returned to its `ThreadOwnedPool` by the worker thread itself, after the
call has returned; no `finally` on the event loop, however often it is cancelled, can hand it on
while a thread still uses it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import threading
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import AsyncGenerator, Callable, Generic, Iterable, Iterator, Sequence, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


# A stream's consumer sets this (in its task) to a callable that says, between two items, whether
# nobody is waiting on the stream's next items now (a reply: its first piece is written and enough
# of its audio is left to play). A pool with later threads moves the stream there while it says
# so, and back when it stops saying so. A context variable, not a parameter, so the model
# cascades between a reply and its engine pass it on.
can_wait: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("can_wait", default=None)


async def iterate_in_thread(
    make_iterable: Callable[[], Iterable[T]],
    executor: Executor,
    max_buffered: int = 16,
    on_thread_exit: Callable[[], None] | None = None,
    later: tuple[Callable[[], bool], Executor] | None = None,
) -> AsyncGenerator[T, None]:
    """Iterate `make_iterable()` in a worker thread. `on_thread_exit` runs in that thread once the
    iteration has ended and the iterator is closed, whatever happened to the consumer.
    `later` = (can_wait, later_executor): while `can_wait()` says so, the iteration goes on in a
    thread of the later executor, else in one of `executor` (checked between two items; one thread
    at a time, so a non-thread-safe iterator is fine)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(max_buffered)
    stop = threading.Event()
    finished: concurrent.futures.Future[None] = concurrent.futures.Future()

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

    def hand_over(iterator: Iterator[T], in_later: bool) -> bool:
        """Go on in the other executor when the consumer's wish has changed and it takes the work."""
        if later is None or stop.is_set() or later[0]() == in_later:
            return False
        try:
            submit(executor if in_later else later[1], lambda: produce(iterator, not in_later), iterator)
            return True
        except RuntimeError:  # shut down: go on here
            return False

    def produce(iterator: Iterator[T] | None = None, in_later: bool = False) -> None:
        handed_over = False
        try:
            if iterator is None:
                iterator = iter(make_iterable())
            for item in iterator:
                if stop.is_set():
                    break
                put(item)
                if hand_over(iterator, in_later):
                    handed_over = True
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            put(_Failure(exc))
        finally:
            if not handed_over:
                finish(iterator)

    def finish(iterator: Iterator[T] | None, failure: BaseException | None = None) -> None:
        """Close the iterator, release, and tell the consumer: the last step, in whichever thread.
        With `failure` (the work was cancelled before it ran, perhaps on the loop's own thread)
        nothing here may wait for the consumer."""
        try:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        finally:
            try:
                if on_thread_exit is not None:
                    on_thread_exit()
            finally:
                if failure is None:
                    put(_DONE)
                else:
                    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                        asyncio.run_coroutine_threadsafe(_put_all(queue, _Failure(failure), _DONE), loop)
                finished.set_result(None)

    def submit(pool: Executor, work: Callable[[], None], iterator: Iterator[T] | None = None) -> None:
        def never_ran(future: concurrent.futures.Future[None]) -> None:
            if future.cancelled():  # shut down before it could start: nothing else will finish it
                finish(iterator, RuntimeError("worker threads shut down"))

        pool.submit(work).add_done_callback(never_ran)

    try:
        submit(executor, produce)
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
        if not finished.done():
            # Waiting keeps a cancelled consumer from racing ahead of its thread; a second
            # cancellation may cut the wait short, which is safe: the thread releases what it holds.
            await asyncio.shield(asyncio.wrap_future(finished))


async def _put_all(queue: asyncio.Queue[object], *items: object) -> None:
    for item in items:
        await queue.put(item)


def name_native_thread(name: str) -> None:
    """Give the calling thread `name` in the OS too (Linux keeps 15 bytes), so `top -H`, /proc and
    the bench's busiest-thread line say which lane a thread is; native threads a library starts
    from this thread inherit the name. Python 3.11 names only its own Thread object."""
    with contextlib.suppress(AttributeError, OSError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode(errors="replace")[:15], 0, 0, 0)  # 15: PR_SET_NAME


def named_thread_pool(max_workers: int, name_prefix: str, nice: int = 0) -> ThreadPoolExecutor:
    """A ThreadPoolExecutor whose threads carry their names in the OS too (and run at `nice` > 0)."""

    def start() -> None:
        name_native_thread(threading.current_thread().name)
        if nice > 0:
            lower_thread_priority(nice)

    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name_prefix, initializer=start)


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

    def __init__(self, resources: Sequence[R], thread_name_prefix: str, nice: int = 0, later_nice: int = 0) -> None:
        """`nice` > 0: the worker threads run at that lower CPU priority (work nobody waits on yet).
        `later_nice` > 0: a second set of threads at that priority, where a stream goes on while its
        consumer does not wait on it (`stream(can_wait=...)`). Every thread exists from the start."""
        if not resources:
            raise ValueError("a pool needs at least one resource")
        self.resources = list(resources)
        self._executor = named_thread_pool(len(self.resources), thread_name_prefix, nice)
        _start_every_thread(self._executor, len(self.resources))
        self._later_executor = None
        if later_nice > 0:
            self._later_executor = named_thread_pool(len(self.resources), thread_name_prefix + "-later", later_nice)
            _start_every_thread(self._later_executor, len(self.resources))
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
                     urgent: bool = False, can_wait: Callable[[], bool] | None = None) -> AsyncGenerator[T, None]:
        """`urgent`: wait ahead of every non-urgent waiter (someone is waiting to hear this one).
        `can_wait`: while it says so, the stream goes on in the later threads (if the pool has them)."""
        resource = await self._acquire(urgent)
        later = (can_wait, self._later_executor) if can_wait is not None and self._later_executor is not None else None
        # No await between acquiring and starting the thread: from here the thread owns `resource`.
        items = iterate_in_thread(lambda: fn(resource), self._executor, max_buffered, self._releaser(resource), later)
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()

    def close(self, wait: bool = True) -> None:
        """No new calls; `wait` for the running ones to return."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
        if self._later_executor is not None:
            self._later_executor.shutdown(wait=wait, cancel_futures=True)

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


def _start_every_thread(executor: ThreadPoolExecutor, threads: int) -> None:
    """Make all of the executor's threads now (it makes them as work arrives): a thread made later,
    under load, would look like a leak to anything counting threads (the hang-up storm test)."""
    all_started = threading.Barrier(threads + 1)
    for _ in range(threads):
        executor.submit(all_started.wait)
    all_started.wait()
