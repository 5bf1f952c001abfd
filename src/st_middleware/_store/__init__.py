"""The state store: captures not yet confirmed, revoked sessions, device authorizations.

A small, dumb, fast storage engine with TTLs and a few atomic operations;
the core decides what to keep. Backends:

- ``"memory://"`` (default): :class:`MemoryStore`, this process only.
- ``"sqlite:////ABSOLUTE/PATH.db"``: :class:`SqliteStore`, the processes of one host.
- ``"redis://HOST:PORT/DB"`` / ``"rediss://..."``: ``RedisStore`` and
  ``AsyncRedisStore``, many hosts; imported only when used (``redis`` extra).

:func:`open_store` turns the ``store=`` setting into a :class:`StorePair`
(``sync`` for WSGI and threads, ``aio`` for ASGI, same data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import AsyncStore, CaptureEntry, CaptureState, Store, StoreUnavailable
from ._memory import MemoryStore
from ._open import FORMS, StorePair, StoreSpec, open_store, parse_store_url
from ._sqlite import AsyncSqliteStore, SqliteStore
from ._threaded import InlineAsyncStore, ThreadedAsyncStore

if TYPE_CHECKING:
    from ._redis import AsyncRedisStore, RedisStore

__all__ = [
    "FORMS",
    "AsyncRedisStore",
    "AsyncSqliteStore",
    "AsyncStore",
    "CaptureEntry",
    "CaptureState",
    "InlineAsyncStore",
    "MemoryStore",
    "RedisStore",
    "SqliteStore",
    "Store",
    "StorePair",
    "StoreSpec",
    "StoreUnavailable",
    "ThreadedAsyncStore",
    "open_store",
    "parse_store_url",
]


def __getattr__(name: str) -> Any:
    # The Redis classes import `redis`, an optional extra: only when asked for.
    if name in ("RedisStore", "AsyncRedisStore"):
        from . import _redis

        return getattr(_redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
