"""From the ``store=`` setting to a store: URL parsing and the factory.

:func:`parse_store_url` is the one place that reads a store URL, and
:func:`open_store` turns any accepted value into a :class:`StorePair`: the
WSGI adapter and the capture worker use its ``sync`` side, the ASGI adapter
its ``aio`` side, and both sides see the same data.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import ConfigurationError
from ._base import ASYNC_METHODS, SYNC_METHODS, AsyncStore, Store
from ._memory import MemoryStore
from ._sqlite import AsyncSqliteStore, SqliteStore
from ._threaded import InlineAsyncStore, ThreadedAsyncStore

__all__ = ["DEFAULT_PREFIX", "FORMS", "StorePair", "StoreSpec", "open_store", "parse_store_url"]

DEFAULT_PREFIX = "st:"

#: Quoted in every error about a store value, so the fix is on screen.
FORMS = (
    'expected "memory://" (the default, this process only); '
    '"sqlite:////ABSOLUTE/PATH.db" (four slashes: sqlite:/// then an absolute path; '
    "one host, any number of processes); "
    '"redis://HOST:PORT/DB" or "rediss://HOST:PORT/DB" (many hosts; optional ?prefix=st: ; '
    'needs pip install "st-middleware[redis]"); '
    "or an object implementing the Store protocol, or a (Store, AsyncStore) pair"
)


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A store URL, parsed and checked."""

    kind: Literal["memory", "sqlite", "redis"]
    #: The value with any password masked: safe for ``repr`` and logs.
    shown: str
    #: sqlite: the absolute path; redis: the URL for redis-py (without ``prefix``).
    target: str = field(default="", repr=False)
    #: redis: what every key starts with.
    prefix: str = DEFAULT_PREFIX


class StorePair(NamedTuple):
    """The two sides of one store; unpacks as ``sync, aio = open_store(...)``."""

    #: For WSGI and for threads (the capture worker).
    sync: Store
    #: For ASGI; same data as ``sync``.
    aio: AsyncStore

    def close(self) -> None:
        """Close the store for good (async views over the sync store end with it)."""
        self.sync.close()

    async def aclose(self) -> None:
        """Release the running loop's async connections, then close the store for good."""
        await self.aio.aclose()
        self.sync.close()


def parse_store_url(value: str) -> StoreSpec:
    """Read a store URL; :class:`ConfigurationError` (a ``ValueError``) if it is none.

    Errors quote the expected forms (:data:`FORMS`) and never the value
    itself unless it is known to hold no secret: an unknown form might be a
    misplaced password, so only its scheme is named.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"store must be a URL string or a store object; {FORMS}")
    text = value.strip()
    if text in ("", "memory://"):  # "" is an empty SMALL_TRANSFERS_STORE: the default
        return StoreSpec("memory", shown="memory://")
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(f"store has no scheme; {FORMS}")
    if scheme == "memory":
        raise ConfigurationError(f'store "memory://" takes nothing after the slashes; {FORMS}')
    if scheme == "sqlite":
        return _sqlite_spec(rest)
    if scheme in ("redis", "rediss"):
        return _redis_spec(text)
    shown_scheme = scheme if scheme.isascii() and scheme.isalnum() else "?"
    raise ConfigurationError(f"store scheme {shown_scheme!r} is not supported; {FORMS}")


def _sqlite_spec(rest: str) -> StoreSpec:
    # "sqlite:///" + "/abs/path.db" leaves "//abs/path.db" after "sqlite://".
    path = rest[1:] if rest.startswith("/") else ""
    if not path or not os.path.isabs(path):
        raise ConfigurationError(
            "a SQLite store needs an absolute path after sqlite:/// "
            "(four slashes in all on POSIX, e.g. sqlite:////var/lib/app/st.db), "
            f"got a relative one; {FORMS}"
        )
    if "?" in path or "#" in path:
        raise ConfigurationError(f"a SQLite store URL takes no query or fragment; {FORMS}")
    return StoreSpec("sqlite", shown=f"sqlite:///{path}", target=path)


def _redis_spec(text: str) -> StoreSpec:
    parts = urlsplit(text)
    shown = _redacted(text)
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ConfigurationError(f"store {shown}: the port is not a number; {FORMS}") from None
    if not parts.hostname:
        raise ConfigurationError(f"store {shown}: no host; {FORMS}")
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise ConfigurationError(f"store {shown}: the database must be a number (/0); {FORMS}")
    if parts.fragment:
        raise ConfigurationError(f"store {shown}: a fragment (#...) means nothing here; {FORMS}")
    options = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in options if name == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not (0 < len(prefix) <= 64 and prefix.isascii() and prefix.isprintable()) or " " in prefix:
        raise ConfigurationError(
            f"store {shown}: prefix must be 1-64 printable ASCII characters without spaces; {FORMS}"
        )
    # redis-py reads the other options (ssl_cert_reqs=..., for one); ours it would refuse.
    query = urlencode([(name, value) for name, value in options if name != "prefix"])
    return StoreSpec(
        "redis", shown=shown, target=urlunsplit(parts._replace(query=query)), prefix=prefix
    )


def _redacted(url: str) -> str:
    """``url`` with the password (in the userinfo or a ``password=`` option) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hostport}"
    options = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(n, "***" if n == "password" else v) for n, v in options], safe="*:")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def open_store(value: object = None) -> StorePair:
    """Open the store ``value`` names; both sides, sharing the same data.

    ``value`` is ``None`` (``"memory://"``), a URL (see :data:`FORMS`), a
    :class:`StorePair` or ``(Store, AsyncStore)`` tuple, or an object with
    the :class:`Store` methods; its async side then runs each call in a
    thread (:class:`ThreadedAsyncStore`, ``asyncio.to_thread``), so the
    object must be thread-safe. An object with only the async methods is
    refused: WSGI and the capture worker need a sync side.

    Nothing connects to Redis here (its clients connect on first use), so a
    Redis that is down at start-up does not stop the app; a SQLite file that
    cannot be opened raises :class:`StoreUnavailable` at once.
    """
    if value is None:
        value = "memory://"
    if isinstance(value, str):
        return _open_url(value, parse_store_url(value))
    if isinstance(value, tuple):
        if len(value) == 2 and _side(value[0]) == "sync" and _side(value[1]) == "async":
            return StorePair(cast(Store, value[0]), cast(AsyncStore, value[1]))
        raise ConfigurationError(f"a store pair must be (Store, AsyncStore); {FORMS}")
    if _side(value) == "async":
        raise ConfigurationError(
            f"store {type(value).__name__} has only async methods; WSGI and the capture worker "
            f"need a sync side: pass (sync_store, async_store); {FORMS}"
        )
    store = cast(Store, value)
    return StorePair(store, _async_view(store))


def _open_url(value: str, spec: StoreSpec) -> StorePair:
    if spec.kind == "memory":
        memory = MemoryStore()
        return StorePair(memory, InlineAsyncStore(memory))
    if spec.kind == "sqlite":
        sqlite = SqliteStore(spec.target)
        return StorePair(sqlite, AsyncSqliteStore(sqlite))
    try:
        from ._redis import AsyncRedisStore, RedisStore
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "redis":
            raise
        raise ConfigurationError(
            f'store {spec.shown} needs the redis package: pip install "st-middleware[redis]"'
        ) from None
    return StorePair(RedisStore(value), AsyncRedisStore(value))


def _async_view(store: Store) -> AsyncStore:
    if isinstance(store, MemoryStore):
        return InlineAsyncStore(store)
    if isinstance(store, SqliteStore):
        return AsyncSqliteStore(store)
    return ThreadedAsyncStore(store)


def _side(obj: object) -> Literal["sync", "async"]:
    """Which protocol ``obj`` implements, judged by its methods; else ConfigurationError."""
    name = type(obj).__name__
    operations = SYNC_METHODS[:-1]
    missing = [op for op in operations if not callable(getattr(obj, op, None))]
    if missing:
        raise ConfigurationError(f"store object {name} lacks {', '.join(missing)}; {FORMS}")
    coroutines = [op for op in operations if inspect.iscoroutinefunction(getattr(obj, op))]
    if not coroutines and callable(getattr(obj, SYNC_METHODS[-1], None)):
        return "sync"
    if len(coroutines) == len(operations) and callable(getattr(obj, ASYNC_METHODS[-1], None)):
        return "async"
    raise ConfigurationError(
        f"store object {name} must have all the Store methods plus close(), or all of them "
        f"async plus aclose(); {FORMS}"
    )
