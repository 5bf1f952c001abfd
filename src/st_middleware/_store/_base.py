"""What every store is: the two protocols, the capture record, the one error.

The core decides what to keep and when; a store only keeps it. Values are
opaque ``bytes`` (the core serializes and seals them), keys are short ASCII
strings the core builds. Arguments are checked here, once, with the same
rules for every backend, so that a key that works in tests with the memory
store also works in production with Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "ASYNC_METHODS",
    "MAX_KEY_LENGTH",
    "MAX_TTL",
    "SYNC_METHODS",
    "AsyncStore",
    "CaptureEntry",
    "CaptureState",
    "Store",
    "StoreUnavailable",
    "check_attempts",
    "check_error",
    "check_key",
    "check_lease",
    "check_limit",
    "check_time",
    "check_ttl",
    "check_value",
    "millis",
]

CaptureState = Literal["pending", "failed"]

#: Keys are built by the core ("revoked:<sid>", "device:<code>"); this leaves room.
MAX_KEY_LENGTH = 512
#: Ten years: longer than anything the core keeps, short of overflows anywhere.
MAX_TTL = 10 * 365 * 24 * 3600.0

#: The operations both protocols share, by name (``close``/``aclose`` aside).
_OPERATIONS = (
    "get",
    "put",
    "add",
    "take",
    "delete",
    "incr",
    "enqueue",
    "claim",
    "reschedule",
    "fail",
    "finish",
    "captures",
)
SYNC_METHODS = (*_OPERATIONS, "close")
ASYNC_METHODS = (*_OPERATIONS, "aclose")


class StoreUnavailable(Exception):
    """The backing engine could not be reached or used.

    Redis down or timing out, SQLite locked past its busy timeout, a disk
    full, a store used after ``close``. The message is short and names the
    store and the failure, never a key's value. The core answers 503 (or
    runs free requests anonymously); it never turns this into a 500.
    """


@dataclass(frozen=True, slots=True)
class CaptureEntry:
    """One capture in the outbox, as the store keeps it."""

    #: Unique: the charge's idempotency key + ``":capture"``.
    id: str
    #: Opaque to the store (the core's sealed record).
    payload: bytes
    #: Unix time of the next attempt.
    due_at: float
    #: Attempts made so far.
    attempts: int
    #: Unix time the capture was first written.
    created_at: float
    #: What went wrong last: short, secret-free text.
    last_error: str | None
    #: ``"pending"`` (claimable when due) or ``"failed"`` (terminal, kept for operators).
    state: CaptureState
    #: Until when the last claimer holds it; 0 when not leased.
    leased_until: float = 0.0

    def __post_init__(self) -> None:
        check_key(self.id)
        check_value(self.payload)
        check_time(self.due_at, "due_at")
        check_time(self.created_at, "created_at")
        check_time(self.leased_until, "leased_until")
        if self.state not in ("pending", "failed"):
            raise ValueError(f"state must be 'pending' or 'failed', got {self.state!r}")
        check_attempts(self.attempts)
        check_error(self.last_error)


@runtime_checkable
class Store(Protocol):
    """A synchronous store: for WSGI and for the capture worker thread.

    Every method may raise :class:`StoreUnavailable`, and ``ValueError`` or
    ``TypeError`` for arguments no backend accepts (a key that is not
    printable ASCII, a ``ttl`` that is not a positive number of seconds, a
    value that is not ``bytes``). TTLs count on the store's own clock;
    ``now``, ``due_at`` and ``leased_until`` are the caller's unix times.
    """

    def get(self, key: str) -> bytes | None:
        """The value at ``key``, or ``None`` if absent or expired."""
        ...

    def put(self, key: str, value: bytes, ttl: float) -> None:
        """Set ``key`` to ``value`` for ``ttl`` seconds, replacing any value."""
        ...

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set ``key`` only if absent (or expired), atomically; True if this call set it."""
        ...

    def take(self, key: str) -> bytes | None:
        """Get and delete ``key`` atomically: of racing callers, one gets the value."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it is absent."""
        ...

    def incr(self, key: str, ttl: float) -> int:
        """Add 1 to the counter at ``key`` atomically and return the new count.

        An absent counter is created at 1 living ``ttl`` seconds; later
        increments keep that expiry. A value set by ``put`` that is not a
        decimal integer raises ``ValueError``.
        """
        ...

    def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """Insert ``entry`` (or replace the one with its id); it lives ``ttl`` seconds at most."""
        ...

    def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """Lease up to ``limit`` pending entries that are due and not leased, atomically.

        Due means ``due_at <= now`` and ``leased_until <= now``; the oldest
        due come first. Each gets ``leased_until = now + lease``, and is
        returned with it; no other claimer gets it before then.
        """
        ...

    def reschedule(self, id: str, due_at: float, attempts: int, last_error: str | None) -> None:
        """Release the lease of a pending entry and set its next attempt; no-op if gone."""
        ...

    def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """Mark an entry failed (terminal, never claimed again), kept ``ttl`` more seconds."""
        ...

    def finish(self, id: str) -> None:
        """The capture is confirmed: remove its entry; no-op if gone."""
        ...

    def captures(self) -> list[CaptureEntry]:
        """Every live entry, pending and failed, oldest first (for operators)."""
        ...

    def close(self) -> None:
        """Release everything, for good: later calls raise :class:`StoreUnavailable`. Idempotent."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """The asynchronous twin of :class:`Store`, for ASGI: same methods, same rules."""

    async def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get`."""
        ...

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        """See :meth:`Store.put`."""
        ...

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """See :meth:`Store.add`."""
        ...

    async def take(self, key: str) -> bytes | None:
        """See :meth:`Store.take`."""
        ...

    async def delete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        ...

    async def incr(self, key: str, ttl: float) -> int:
        """See :meth:`Store.incr`."""
        ...

    async def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """See :meth:`Store.enqueue`."""
        ...

    async def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """See :meth:`Store.claim`."""
        ...

    async def reschedule(
        self, id: str, due_at: float, attempts: int, last_error: str | None
    ) -> None:
        """See :meth:`Store.reschedule`."""
        ...

    async def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """See :meth:`Store.fail`."""
        ...

    async def finish(self, id: str) -> None:
        """See :meth:`Store.finish`."""
        ...

    async def captures(self) -> list[CaptureEntry]:
        """See :meth:`Store.captures`."""
        ...

    async def aclose(self) -> None:
        """Release what this side holds for the running event loop; idempotent.

        Unlike :meth:`Store.close` this is not the end: as the ASGI adapter's
        own ``aclose``, it may run once per event loop (tests run one loop
        per test), and a later call on any loop connects again. A store
        shared with a sync side is closed for good by ``Store.close``.
        """
        ...


# -- argument checks, shared by every backend ---------------------------------------


def check_key(key: str) -> str:
    """Return ``key`` if it is 1-512 printable ASCII characters without spaces."""
    # One rule for all backends: Redis and SQLite would take almost anything,
    # so a key the memory store accepted could otherwise break only in production.
    # Cheapest first; this runs on every call (~0.25 us).
    if (
        type(key) is str
        and key.isascii()
        and key.isprintable()
        and " " not in key
        and 0 < len(key) <= MAX_KEY_LENGTH
    ):
        return key
    raise ValueError("a store key must be 1-512 printable ASCII characters without spaces")


def check_value(value: bytes) -> bytes:
    """Return ``value`` if it is ``bytes`` (a ``str`` would be silently encoded by Redis)."""
    if isinstance(value, bytes):
        return value
    raise TypeError(f"a store value must be bytes, not {type(value).__name__}")


def check_ttl(ttl: float) -> float:
    """Return ``ttl`` if it is a positive, finite number of seconds (at most ten years)."""
    # The comparison is False for NaN too.
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl <= MAX_TTL:
        return float(ttl)
    raise ValueError("ttl must be a number of seconds > 0 (and at most ten years)")


def check_time(value: float, name: str) -> float:
    """Return ``value`` if it is a finite number (a unix time, or 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{name} must be a finite number")


def check_lease(lease: float) -> float:
    """Return ``lease`` if it is a positive, finite number of seconds."""
    if check_time(lease, "lease") > 0:
        return float(lease)
    raise ValueError("lease must be > 0 seconds")


def check_limit(limit: int) -> int:
    """Return ``limit`` if it is an integer >= 0."""
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        return limit
    raise ValueError("limit must be an integer >= 0")


def check_attempts(attempts: int) -> int:
    """Return ``attempts`` if it is an integer >= 0."""
    if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 0:
        return attempts
    raise ValueError("attempts must be an integer >= 0")


def check_error(last_error: str | None) -> str | None:
    """Return ``last_error`` if it is a string or ``None``."""
    if last_error is None or isinstance(last_error, str):
        return last_error
    raise TypeError("last_error must be a string or None")


def millis(ttl: float) -> int:
    """``ttl`` seconds as whole milliseconds, never 0 (Redis refuses ``PX 0``)."""
    return max(1, math.ceil(ttl * 1000))
