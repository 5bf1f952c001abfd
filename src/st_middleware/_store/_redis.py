"""The many-host store (``"redis://HOST:PORT/DB"``, ``"rediss://..."``), Redis >= 5.

Imported only when such a URL is used: ``redis`` is an optional extra.

Layout, every key under ``prefix`` (default ``"st:"``) and every key with a TTL:

- ``{prefix}kv:{key}``: a string, written with ``SET ... PX`` (``NX`` for ``add``).
- ``{prefix}outbox:entry:{id}``: a hash per capture (its fields, including
  ``leased_until``), expiring with the capture's ``ttl``.
- ``{prefix}outbox:due``: pending, unleased ids scored by ``due_at``;
  ``{prefix}outbox:leased``: leased ids scored by ``leased_until``;
  ``{prefix}outbox:all``: every id scored by its expiry (server ms), for
  ``captures()`` and for dropping ids whose hash Redis has expired. These
  indexes expire no sooner than the longest-lived entry they list.

Everything that reads then writes is a Lua script, atomic on the server:
``take`` (GET + DEL, rather than GETDEL, which needs Redis 6.2), ``incr``
(INCR + PEXPIRE only when new, rather than PEXPIRE NX, which needs 7.0)
and every outbox operation; so two hosts never claim one capture, nor take
one token. Scripts are sent by SHA and re-sent after a server restart.

Each side has its own client and pool: connect timeout 2 s, command timeout
3 s, no client-side retries (a retried GETDEL-like script whose reply was
lost would hand a token out zero times; the core has its own retry policy).
The async side keeps one client per event loop, as the ASGI adapter does
for HTTP. Every ``redis`` error becomes :class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from .._errors import ConfigurationError
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
    millis,
)
from ._open import StoreSpec, parse_store_url

__all__ = ["AsyncRedisStore", "RedisStore"]

T = TypeVar("T")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


# aclose() on the asyncio client arrived in 5.0.1.
if _version(redis.__version__) < (5, 0, 1):
    raise ConfigurationError(
        f"the Redis store needs redis >= 5.0.1 (found {redis.__version__}): "
        'pip install "st-middleware[redis]"'
    )

_TAKE = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
"""

_INCR = """
local count = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# Shared by the outbox scripts. KEYS: due, leased, all; ARGV[1]: the prefix
# of the entry hashes. Entry keys are built here, which Redis Cluster would
# refuse; a single server (or a primary with replicas) is what this supports.
_OUTBOX = """
local DUE, LEASED, ALL = KEYS[1], KEYS[2], KEYS[3]
local ENTRY = ARGV[1]
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- An index lives at least as long as the longest-lived entry it lists.
local function keep(key, ms)
  local left = redis.call('PTTL', key)
  if left == -1 or (left >= 0 and left < ms) then redis.call('PEXPIRE', key, ms) end
end
local function forget(id)
  redis.call('ZREM', DUE, id)
  redis.call('ZREM', LEASED, id)
  redis.call('ZREM', ALL, id)
  redis.call('DEL', ENTRY .. id)
end
-- Ids whose entry expired: a bounded batch per call keeps every call short.
local function purge()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', ALL, '-inf', server_ms(), 'LIMIT', 0, 100)) do
    forget(id)
  end
end
"""

# ARGV: entry prefix, id, ttl ms, payload, due_at, attempts, created_at, state,
# leased_until[, last_error]
_ENQUEUE = (
    _OUTBOX
    + """
purge()
local id, ttl = ARGV[2], tonumber(ARGV[3])
local key = ENTRY .. id
forget(id)
redis.call('HSET', key, 'id', id, 'payload', ARGV[4], 'due_at', ARGV[5], 'attempts', ARGV[6],
  'created_at', ARGV[7], 'state', ARGV[8], 'leased_until', ARGV[9])
if ARGV[10] then redis.call('HSET', key, 'last_error', ARGV[10]) end
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', ALL, server_ms() + ttl, id)
keep(ALL, ttl)
if ARGV[8] == 'pending' then
  if tonumber(ARGV[9]) > 0 then
    redis.call('ZADD', LEASED, ARGV[9], id)
    keep(LEASED, ttl)
  else
    redis.call('ZADD', DUE, ARGV[5], id)
    keep(DUE, ttl)
  end
end
return 1
"""
)

# ARGV: entry prefix, now, leased_until (now + lease), limit
_CLAIM = (
    _OUTBOX
    + """
purge()
local now, leased_until = ARGV[2], ARGV[3]
-- Leases that ran out (the claimer crashed, or is late) go back to the due queue.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASED, '-inf', now)) do
  redis.call('ZREM', LEASED, id)
  local due_at = redis.call('HGET', ENTRY .. id, 'due_at')
  if due_at then
    redis.call('ZADD', DUE, due_at, id)
    keep(DUE, redis.call('PTTL', ENTRY .. id))
  end
end
local claimed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))) do
  redis.call('ZREM', DUE, id)
  local left = redis.call('PTTL', ENTRY .. id)
  if left > 0 then
    redis.call('HSET', ENTRY .. id, 'leased_until', leased_until)
    redis.call('ZADD', LEASED, leased_until, id)
    keep(LEASED, left)
    claimed[#claimed + 1] = redis.call('HGETALL', ENTRY .. id)
  end
end
return claimed
"""
)

# ARGV: entry prefix, id, due_at, attempts[, last_error]
_RESCHEDULE = (
    _OUTBOX
    + """
local id = ARGV[2]
local key = ENTRY .. id
if redis.call('HGET', key, 'state') ~= 'pending' then return 0 end
redis.call('HSET', key, 'due_at', ARGV[3], 'attempts', ARGV[4], 'leased_until', '0')
if ARGV[5] then
  redis.call('HSET', key, 'last_error', ARGV[5])
else
  redis.call('HDEL', key, 'last_error')
end
redis.call('ZREM', LEASED, id)
redis.call('ZADD', DUE, ARGV[3], id)
keep(DUE, redis.call('PTTL', key))
return 1
"""
)

# ARGV: entry prefix, id, attempts, last_error, ttl ms
_FAIL = (
    _OUTBOX
    + """
local id, ttl = ARGV[2], tonumber(ARGV[5])
local key = ENTRY .. id
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HSET', key, 'state', 'failed', 'attempts', ARGV[3], 'last_error', ARGV[4],
  'leased_until', '0')
redis.call('PEXPIRE', key, ttl)
redis.call('ZREM', DUE, id)
redis.call('ZREM', LEASED, id)
redis.call('ZADD', ALL, server_ms() + ttl, id)
keep(ALL, ttl)
return 1
"""
)

# ARGV: entry prefix, id
_FINISH = (
    _OUTBOX
    + """
forget(ARGV[2])
return 1
"""
)

# ARGV: entry prefix
_CAPTURES = (
    _OUTBOX
    + """
purge()
local entries = {}
for _, id in ipairs(redis.call('ZRANGE', ALL, 0, -1)) do
  local fields = redis.call('HGETALL', ENTRY .. id)
  if #fields > 0 then entries[#entries + 1] = fields end
end
return entries
"""
)

_SCRIPTS = {
    "take": _TAKE,
    "incr": _INCR,
    "enqueue": _ENQUEUE,
    "claim": _CLAIM,
    "reschedule": _RESCHEDULE,
    "fail": _FAIL,
    "finish": _FINISH,
    "captures": _CAPTURES,
}


class _Layout:
    """Key names and script arguments, the same for the sync and async sides."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.entry = f"{prefix}outbox:entry:"
        self.outbox = [f"{prefix}outbox:due", f"{prefix}outbox:leased", f"{prefix}outbox:all"]

    def kv(self, key: str) -> str:
        return f"{self.prefix}kv:{check_key(key)}"

    def enqueue_args(self, entry: CaptureEntry, ttl: float) -> list[Any]:
        if not isinstance(entry, CaptureEntry):
            raise TypeError("enqueue takes a CaptureEntry")
        args: list[Any] = [
            self.entry,
            entry.id,
            millis(check_ttl(ttl)),
            entry.payload,
            repr(entry.due_at),
            entry.attempts,
            repr(entry.created_at),
            entry.state,
            repr(entry.leased_until),
        ]
        if entry.last_error is not None:
            args.append(entry.last_error)
        return args

    def claim_args(self, now: float, lease: float, limit: int) -> list[Any]:
        now = check_time(now, "now")
        return [self.entry, repr(now), repr(now + check_lease(lease)), limit]

    def reschedule_args(
        self, id: str, due_at: float, attempts: int, last_error: str | None
    ) -> list[Any]:
        args: list[Any] = [
            self.entry,
            check_key(id),
            repr(check_time(due_at, "due_at")),
            check_attempts(attempts),
        ]
        if check_error(last_error) is not None:
            args.append(last_error)
        return args

    def fail_args(self, id: str, attempts: int, last_error: str, ttl: float) -> list[Any]:
        check_error(last_error)
        ms = millis(check_ttl(ttl))
        return [self.entry, check_key(id), check_attempts(attempts), last_error, ms]


def _entry_of(fields: list[bytes]) -> CaptureEntry:
    """A :class:`CaptureEntry` from an ``HGETALL`` reply (a flat name, value list)."""
    got = dict(zip(fields[::2], fields[1::2], strict=True))
    last_error = got.get(b"last_error")
    return CaptureEntry(
        id=got[b"id"].decode("ascii"),
        payload=got[b"payload"],
        due_at=float(got[b"due_at"]),
        attempts=int(got[b"attempts"]),
        created_at=float(got[b"created_at"]),
        last_error=None if last_error is None else last_error.decode("utf-8", "replace"),
        state="failed" if got[b"state"] == b"failed" else "pending",
        leased_until=float(got[b"leased_until"]),
    )


def _entries_of(reply: Any) -> list[CaptureEntry]:
    return [_entry_of(fields) for fields in reply]


def _client_options(connect_timeout: float, timeout: float, *, aio: bool) -> dict[str, Any]:
    return {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": timeout,
        # redis-py >= 6 retries 3-10 times with backoff by default: a dead
        # server would hold each request for seconds, and a retried script
        # whose reply was lost could run twice.
        "retry": AsyncRetry(NoBackoff(), 0) if aio else Retry(NoBackoff(), 0),
        "decode_responses": False,
    }


def _failure(exc: Exception, shown: str) -> Exception:
    """The exception to raise for a failed redis call."""
    text = str(exc)
    if isinstance(exc, ResponseError) and "not an integer" in text:
        # incr on a value `put` there: the caller's mistake, as in the other backends.
        return ValueError("the value at this key is not a counter")
    # redis-py messages name the failure and host:port, never a value or password.
    return StoreUnavailable(f"the Redis store at {shown}: {type(exc).__name__}: {text[:200]}")


class _Base:
    """What the sync and async sides share: settings, layout, ``repr``."""

    _aio = False

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        connect_timeout: float = 2.0,
        timeout: float = 3.0,
    ) -> None:
        spec: StoreSpec = parse_store_url(url)
        if spec.kind != "redis":
            raise ConfigurationError(f"{type(self).__name__} needs a redis:// or rediss:// URL")
        self._url = spec.target
        self._shown = spec.shown
        self._layout = _Layout(spec.prefix if prefix is None else prefix)
        self._options = _client_options(connect_timeout, timeout, aio=self._aio)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._shown!r}, prefix={self._layout.prefix!r})"


class RedisStore(_Base):
    """A :class:`~._base.Store` in Redis, shared by every host that reaches it.

    ``url`` is ``redis://[[user]:password@]HOST[:PORT][/DB][?prefix=st:]``
    (``rediss://`` for TLS); ``prefix`` overrides the URL's. The client
    connects on first use, so constructing never fails for a server that
    is down.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        connect_timeout: float = 2.0,
        timeout: float = 3.0,
    ) -> None:
        super().__init__(url, prefix=prefix, connect_timeout=connect_timeout, timeout=timeout)
        self._closed = False
        self._client = redis.Redis.from_url(self._url, **self._options)
        self._scripts: dict[str, Script] = {
            name: self._client.register_script(source) for name, source in _SCRIPTS.items()
        }

    def _call(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise StoreUnavailable(f"the Redis store at {self._shown} is closed")
        try:
            return call(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise _failure(exc, self._shown) from exc

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._call(self._scripts[name], keys=keys, args=args)

    def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get`."""
        return cast("bytes | None", self._call(self._client.get, self._layout.kv(key)))

    def put(self, key: str, value: bytes, ttl: float) -> None:
        """See :meth:`Store.put`."""
        name, ms = self._layout.kv(key), millis(check_ttl(ttl))
        self._call(self._client.set, name, check_value(value), px=ms)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """See :meth:`Store.add`."""
        name, ms = self._layout.kv(key), millis(check_ttl(ttl))
        return bool(self._call(self._client.set, name, check_value(value), px=ms, nx=True))

    def take(self, key: str) -> bytes | None:
        """See :meth:`Store.take`."""
        return cast("bytes | None", self._script("take", [self._layout.kv(key)], []))

    def delete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        self._call(self._client.delete, self._layout.kv(key))

    def incr(self, key: str, ttl: float) -> int:
        """See :meth:`Store.incr`."""
        name, ms = self._layout.kv(key), millis(check_ttl(ttl))
        return int(self._script("incr", [name], [ms]))

    def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """See :meth:`Store.enqueue`."""
        self._script("enqueue", self._layout.outbox, self._layout.enqueue_args(entry, ttl))

    def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """See :meth:`Store.claim`."""
        args = self._layout.claim_args(now, lease, check_limit(limit))
        if limit == 0:
            return []  # ZRANGEBYSCORE ... LIMIT 0 0 would mean "all" to some servers
        return _entries_of(self._script("claim", self._layout.outbox, args))

    def reschedule(self, id: str, due_at: float, attempts: int, last_error: str | None) -> None:
        """See :meth:`Store.reschedule`."""
        args = self._layout.reschedule_args(id, due_at, attempts, last_error)
        self._script("reschedule", self._layout.outbox, args)

    def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """See :meth:`Store.fail`."""
        args = self._layout.fail_args(id, attempts, last_error, ttl)
        self._script("fail", self._layout.outbox, args)

    def finish(self, id: str) -> None:
        """See :meth:`Store.finish`."""
        self._script("finish", self._layout.outbox, [self._layout.entry, check_key(id)])

    def captures(self) -> list[CaptureEntry]:
        """See :meth:`Store.captures`."""
        reply = self._script("captures", self._layout.outbox, [self._layout.entry])
        return sorted(_entries_of(reply), key=lambda entry: (entry.created_at, entry.id))

    def close(self) -> None:
        """Close the pool's connections, for good; idempotent."""
        if not self._closed:
            self._closed = True
            self._client.close()


class _LoopClient:
    """An asyncio client and its scripts, bound to one event loop."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.client = redis.asyncio.Redis.from_url(url, **options)
        self.scripts: dict[str, AsyncScript] = {
            name: self.client.register_script(source) for name, source in _SCRIPTS.items()
        }


class AsyncRedisStore(_Base):
    """An :class:`~._base.AsyncStore` in Redis (``redis.asyncio``); see :class:`RedisStore`.

    asyncio connections belong to the loop that opened them, so each running
    loop gets its own client; :meth:`aclose` closes the running loop's.
    """

    _aio = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        connect_timeout: float = 2.0,
        timeout: float = 3.0,
    ) -> None:
        super().__init__(url, prefix=prefix, connect_timeout=connect_timeout, timeout=timeout)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    def _bound(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        bound = self._loops.get(loop)
        if bound is None:
            bound = self._loops[loop] = _LoopClient(self._url, self._options)
        return bound

    async def _await(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise _failure(exc, self._shown) from exc

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._await(self._bound().scripts[name](keys=keys, args=args))

    async def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get`."""
        name = self._layout.kv(key)
        return cast("bytes | None", await self._await(self._bound().client.get(name)))

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        """See :meth:`Store.put`."""
        name, ms = self._layout.kv(key), millis(check_ttl(ttl))
        await self._await(self._bound().client.set(name, check_value(value), px=ms))

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """See :meth:`Store.add`."""
        name, ms = self._layout.kv(key), millis(check_ttl(ttl))
        client = self._bound().client
        return bool(await self._await(client.set(name, check_value(value), px=ms, nx=True)))

    async def take(self, key: str) -> bytes | None:
        """See :meth:`Store.take`."""
        return cast("bytes | None", await self._script("take", [self._layout.kv(key)], []))

    async def delete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        name = self._layout.kv(key)
        await self._await(self._bound().client.delete(name))

    async def incr(self, key: str, ttl: float) -> int:
        """See :meth:`Store.incr`."""
        name, ms = self._layout.kv(key), millis(check_ttl(ttl))
        return int(await self._script("incr", [name], [ms]))

    async def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """See :meth:`Store.enqueue`."""
        args = self._layout.enqueue_args(entry, ttl)
        await self._script("enqueue", self._layout.outbox, args)

    async def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """See :meth:`Store.claim`."""
        args = self._layout.claim_args(now, lease, check_limit(limit))
        if limit == 0:
            return []
        return _entries_of(await self._script("claim", self._layout.outbox, args))

    async def reschedule(
        self, id: str, due_at: float, attempts: int, last_error: str | None
    ) -> None:
        """See :meth:`Store.reschedule`."""
        args = self._layout.reschedule_args(id, due_at, attempts, last_error)
        await self._script("reschedule", self._layout.outbox, args)

    async def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """See :meth:`Store.fail`."""
        args = self._layout.fail_args(id, attempts, last_error, ttl)
        await self._script("fail", self._layout.outbox, args)

    async def finish(self, id: str) -> None:
        """See :meth:`Store.finish`."""
        await self._script("finish", self._layout.outbox, [self._layout.entry, check_key(id)])

    async def captures(self) -> list[CaptureEntry]:
        """See :meth:`Store.captures`."""
        reply = await self._script("captures", self._layout.outbox, [self._layout.entry])
        return sorted(_entries_of(reply), key=lambda entry: (entry.created_at, entry.id))

    async def aclose(self) -> None:
        """Close the running loop's connections; a later call opens new ones."""
        bound = self._loops.pop(asyncio.get_running_loop(), None)
        if bound is not None:
            await bound.client.aclose()
