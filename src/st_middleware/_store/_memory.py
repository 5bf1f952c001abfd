"""The in-process store (``"memory://"``, the default): one dict, one lock.

Fine for one process and for tests. Nothing survives the process, so a
capture pending at exit is retried only by this process's last try.
Expired entries are never returned, and are swept out in bulk on writes
(amortized, see :meth:`MemoryStore._wrote`), so the dicts never hold much
more than what is alive.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ._base import (
    CaptureEntry,
    StoreUnavailable,
    check_attempts,
    check_error,
    check_key,
    check_lease,
    check_limit,
    check_time,
    check_ttl,
    check_value,
)

__all__ = ["MemoryStore"]

#: Writes between two sweeps, at least: a small store is not rescanned on every write.
_MIN_SWEEP_WRITES = 1000


@dataclass(slots=True)
class _Held:
    """An outbox entry and when the store drops it (on the store's clock)."""

    entry: CaptureEntry
    expires_at: float


class MemoryStore:
    """A thread-safe store living in this process; see :class:`~._base.Store`.

    ``clock`` (monotonic seconds) times the TTLs; tests may pin it.
    Every write holds one lock for a few dict operations (``get`` needs
    none), so the async view (:class:`~._threaded.InlineAsyncStore`) calls
    them without a thread.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._kv: dict[str, tuple[bytes, float]] = {}
        self._outbox: dict[str, _Held] = {}
        self._writes = 0
        self._sweep_after = _MIN_SWEEP_WRITES
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore('memory://')"

    # -- key/value -----------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get`."""
        check_key(key)
        self._check_open()
        # No lock: a single dict lookup is atomic (under the GIL, and by the
        # dict's own lock on free-threaded builds), the (value, expiry) pair is
        # immutable, and an expired pair is left for the sweep. Halves the cost.
        item = self._kv.get(key)
        if item is None or item[1] <= self._clock():
            return None
        return item[0]

    def put(self, key: str, value: bytes, ttl: float) -> None:
        """See :meth:`Store.put`."""
        check_key(key)
        check_value(value)
        ttl = check_ttl(ttl)
        self._check_open()
        with self._lock:
            now = self._clock()
            self._kv[key] = (value, now + ttl)
            self._wrote(now)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """See :meth:`Store.add`."""
        check_key(key)
        check_value(value)
        ttl = check_ttl(ttl)
        self._check_open()
        with self._lock:
            now = self._clock()
            item = self._kv.get(key)
            if item is not None and item[1] > now:
                return False
            self._kv[key] = (value, now + ttl)
            self._wrote(now)
            return True

    def take(self, key: str) -> bytes | None:
        """See :meth:`Store.take`."""
        check_key(key)
        self._check_open()
        with self._lock:
            item = self._kv.pop(key, None)
            if item is None or item[1] <= self._clock():
                return None
            return item[0]

    def delete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        check_key(key)
        self._check_open()
        with self._lock:
            self._kv.pop(key, None)

    def incr(self, key: str, ttl: float) -> int:
        """See :meth:`Store.incr`."""
        check_key(key)
        ttl = check_ttl(ttl)
        self._check_open()
        with self._lock:
            now = self._clock()
            item = self._kv.get(key)
            if item is None or item[1] <= now:
                count, expires_at = 1, now + ttl
            else:
                count, expires_at = _counter(item[0]) + 1, item[1]
            # Stored as decimal text, as Redis keeps counters: `get` reads b"3" everywhere.
            self._kv[key] = (str(count).encode(), expires_at)
            self._wrote(now)
            return count

    # -- the capture outbox ------------------------------------------------------------

    def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """See :meth:`Store.enqueue`."""
        if not isinstance(entry, CaptureEntry):
            raise TypeError("enqueue takes a CaptureEntry")
        ttl = check_ttl(ttl)
        self._check_open()
        with self._lock:
            now = self._clock()
            self._outbox[entry.id] = _Held(entry, now + ttl)
            self._wrote(now)

    def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """See :meth:`Store.claim`."""
        now = check_time(now, "now")
        lease = check_lease(lease)
        limit = check_limit(limit)
        self._check_open()
        with self._lock:
            alive = self._clock()
            due = (
                held
                for held in self._outbox.values()
                if held.expires_at > alive
                and held.entry.state == "pending"
                and held.entry.due_at <= now
                and held.entry.leased_until <= now
            )
            # The outbox is small (captures not yet confirmed): a scan is cheaper
            # than keeping a second index in step with every change.
            chosen = heapq.nsmallest(limit, due, key=_due_order)
            for held in chosen:
                held.entry = replace(held.entry, leased_until=now + lease)
            return [held.entry for held in chosen]

    def reschedule(self, id: str, due_at: float, attempts: int, last_error: str | None) -> None:
        """See :meth:`Store.reschedule`."""
        check_key(id)
        due_at = check_time(due_at, "due_at")
        check_attempts(attempts)
        check_error(last_error)
        self._check_open()
        with self._lock:
            held = self._live(id)
            if held is not None and held.entry.state == "pending":
                held.entry = replace(
                    held.entry,
                    due_at=due_at,
                    attempts=attempts,
                    last_error=last_error,
                    leased_until=0.0,
                )

    def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """See :meth:`Store.fail`."""
        check_key(id)
        check_attempts(attempts)
        check_error(last_error)
        ttl = check_ttl(ttl)
        self._check_open()
        with self._lock:
            held = self._live(id)
            if held is not None:
                held.entry = replace(
                    held.entry,
                    state="failed",
                    attempts=attempts,
                    last_error=last_error,
                    leased_until=0.0,
                )
                held.expires_at = self._clock() + ttl

    def finish(self, id: str) -> None:
        """See :meth:`Store.finish`."""
        check_key(id)
        self._check_open()
        with self._lock:
            self._outbox.pop(id, None)

    def captures(self) -> list[CaptureEntry]:
        """See :meth:`Store.captures`."""
        self._check_open()
        with self._lock:
            alive = self._clock()
            entries = [held.entry for held in self._outbox.values() if held.expires_at > alive]
        return sorted(entries, key=lambda entry: (entry.created_at, entry.id))

    def close(self) -> None:
        """Drop everything; later calls raise :class:`StoreUnavailable`."""
        with self._lock:
            self._closed = True
            self._kv = {}
            self._outbox = {}

    # -- housekeeping ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")

    def _live(self, id: str) -> _Held | None:
        held = self._outbox.get(id)
        if held is None or held.expires_at <= self._clock():
            return None
        return held

    def _wrote(self, now: float) -> None:
        """Count a write (lock held); sweep once enough writes have happened.

        A sweep costs one pass over everything held, and the next one waits
        for at least half that many writes, so the cost per write is a small
        constant while what is held stays under ~1.5 x what is alive (+1000).
        Rebuilding the dicts, rather than deleting from them, also gives back
        their memory: a Python dict never shrinks on ``del``.
        """
        self._writes += 1
        if self._writes < self._sweep_after:
            return
        self._kv = {key: item for key, item in self._kv.items() if item[1] > now}
        self._outbox = {id: held for id, held in self._outbox.items() if held.expires_at > now}
        self._writes = 0
        self._sweep_after = max(_MIN_SWEEP_WRITES, (len(self._kv) + len(self._outbox)) // 2)


def _due_order(held: _Held) -> tuple[float, str]:
    return (held.entry.due_at, held.entry.id)


def _counter(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("the value at this key is not a counter") from None
