"""A bounded queue for real-time input: when full, the oldest item is dropped and counted."""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Add an item; returns False if an old item had to be dropped to make room."""
        kept_all = True
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            kept_all = False
        self._items.append(item)
        self._ready.set()
        return kept_all

    async def get(self, timeout_s: float | None = None) -> T | None:
        """The oldest item, or None if `timeout_s` passes first."""
        while not self._items:
            self._ready.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for can swallow a cancellation
                # that arrives as the wait completes, and the session would never stop.
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        return self._items.popleft()
