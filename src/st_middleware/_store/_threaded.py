"""Async views of a synchronous store: inline, or through a worker thread.

ASGI needs an :class:`~._base.AsyncStore`. A store whose calls never wait
on anything but a lock held for microseconds (the memory store) is called
inline; any other synchronous store (SQLite, an object the merchant passes
in) runs each call in the default executor with :func:`asyncio.to_thread`,
so a slow disk or a busy database never stalls the event loop. Both views
share the data of the store they wrap: the sync and async sides see the
same entries, and closing the sync store (for good) ends both.
"""

from __future__ import annotations

import asyncio

from ._base import CaptureEntry, Store

__all__ = ["InlineAsyncStore", "ThreadedAsyncStore"]


class InlineAsyncStore:
    """An :class:`~._base.AsyncStore` calling a non-blocking :class:`~._base.Store` directly."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"InlineAsyncStore({self.store!r})"

    async def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get`."""
        return self.store.get(key)

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        """See :meth:`Store.put`."""
        self.store.put(key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """See :meth:`Store.add`."""
        return self.store.add(key, value, ttl)

    async def take(self, key: str) -> bytes | None:
        """See :meth:`Store.take`."""
        return self.store.take(key)

    async def delete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        self.store.delete(key)

    async def incr(self, key: str, ttl: float) -> int:
        """See :meth:`Store.incr`."""
        return self.store.incr(key, ttl)

    async def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """See :meth:`Store.enqueue`."""
        self.store.enqueue(entry, ttl)

    async def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """See :meth:`Store.claim`."""
        return self.store.claim(now, lease, limit)

    async def reschedule(
        self, id: str, due_at: float, attempts: int, last_error: str | None
    ) -> None:
        """See :meth:`Store.reschedule`."""
        self.store.reschedule(id, due_at, attempts, last_error)

    async def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """See :meth:`Store.fail`."""
        self.store.fail(id, attempts, last_error, ttl)

    async def finish(self, id: str) -> None:
        """See :meth:`Store.finish`."""
        self.store.finish(id)

    async def captures(self) -> list[CaptureEntry]:
        """See :meth:`Store.captures`."""
        return self.store.captures()

    async def aclose(self) -> None:
        """Nothing to release: this view holds no per-loop resource.

        The wrapped store is shared with the sync side and stays open; close
        it with its own ``close`` (or :meth:`StorePair.aclose`).
        """


class ThreadedAsyncStore:
    """An :class:`~._base.AsyncStore` running each call of a :class:`~._base.Store` in a thread.

    Uses :func:`asyncio.to_thread` (the loop's default executor), so it needs
    an asyncio event loop. The wrapped store must be thread-safe.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    async def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get`."""
        return await asyncio.to_thread(self.store.get, key)

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        """See :meth:`Store.put`."""
        await asyncio.to_thread(self.store.put, key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """See :meth:`Store.add`."""
        return await asyncio.to_thread(self.store.add, key, value, ttl)

    async def take(self, key: str) -> bytes | None:
        """See :meth:`Store.take`."""
        return await asyncio.to_thread(self.store.take, key)

    async def delete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        await asyncio.to_thread(self.store.delete, key)

    async def incr(self, key: str, ttl: float) -> int:
        """See :meth:`Store.incr`."""
        return await asyncio.to_thread(self.store.incr, key, ttl)

    async def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """See :meth:`Store.enqueue`."""
        await asyncio.to_thread(self.store.enqueue, entry, ttl)

    async def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """See :meth:`Store.claim`."""
        return await asyncio.to_thread(self.store.claim, now, lease, limit)

    async def reschedule(
        self, id: str, due_at: float, attempts: int, last_error: str | None
    ) -> None:
        """See :meth:`Store.reschedule`."""
        await asyncio.to_thread(self.store.reschedule, id, due_at, attempts, last_error)

    async def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """See :meth:`Store.fail`."""
        await asyncio.to_thread(self.store.fail, id, attempts, last_error, ttl)

    async def finish(self, id: str) -> None:
        """See :meth:`Store.finish`."""
        await asyncio.to_thread(self.store.finish, id)

    async def captures(self) -> list[CaptureEntry]:
        """See :meth:`Store.captures`."""
        return await asyncio.to_thread(self.store.captures)

    async def aclose(self) -> None:
        """Nothing to release: this view holds no per-loop resource.

        The wrapped store is shared with the sync side and stays open; close
        it with its own ``close`` (or :meth:`StorePair.aclose`).
        """
