"""From the ``store=`` value to a store: URL parsing, objects, the redis extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import st_middleware._store as store_package
from st_middleware._errors import ConfigurationError
from st_middleware._store import (
    FORMS,
    AsyncSqliteStore,
    CaptureEntry,
    InlineAsyncStore,
    MemoryStore,
    SqliteStore,
    StorePair,
    ThreadedAsyncStore,
    open_store,
    parse_store_url,
)


def test_the_default_is_memory() -> None:
    for value in (None, "memory://", "", "  memory://  "):
        pair = open_store(value)
        assert isinstance(pair.sync, MemoryStore)
        assert isinstance(pair.aio, InlineAsyncStore)
        assert pair.aio.store is pair.sync


def test_a_sqlite_url_needs_four_slashes_and_an_absolute_path(tmp_path: Path) -> None:
    pair = open_store(f"sqlite:///{tmp_path}/st.db")
    sync, aio = pair  # unpacks as a tuple
    assert isinstance(sync, SqliteStore)
    assert sync.path == f"{tmp_path}/st.db"
    assert isinstance(aio, AsyncSqliteStore)
    assert aio.store is sync
    assert repr(sync) == f"SqliteStore('sqlite:///{tmp_path}/st.db')"
    pair.close()
    for relative in ("sqlite:///st.db", "sqlite://st.db", "sqlite:///", "sqlite://"):
        with pytest.raises(ConfigurationError, match="absolute path") as caught:
            open_store(relative)
        assert "sqlite:////" in str(caught.value)
    with pytest.raises(ConfigurationError, match="no query"):
        open_store(f"sqlite:///{tmp_path}/st.db?mode=ro")


def test_sqlite_store_refuses_a_relative_path_when_built_directly() -> None:
    with pytest.raises(ValueError, match="absolute path"):
        SqliteStore("st.db")


@pytest.mark.parametrize(
    ("url", "target", "prefix"),
    [
        ("redis://localhost", "redis://localhost", "st:"),
        ("redis://127.0.0.1:6380/2", "redis://127.0.0.1:6380/2", "st:"),
        ("rediss://cache.internal:6379/0?prefix=shop:", "rediss://cache.internal:6379/0", "shop:"),
        (
            "rediss://h/0?ssl_cert_reqs=none&prefix=a:",
            "rediss://h/0?ssl_cert_reqs=none",
            "a:",
        ),
    ],
)
def test_redis_urls(url: str, target: str, prefix: str) -> None:
    spec = parse_store_url(url)
    assert (spec.kind, spec.target, spec.prefix) == ("redis", target, prefix)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://", "no host"),
        ("redis://:6379/0", "no host"),
        ("redis://host:port/0", "port is not a number"),
        ("redis://host:6379/zero", "database must be a number"),
        ("redis://host/0#frag", "fragment"),
        ("redis://host/0?prefix=", "prefix must be"),
        ("redis://host/0?prefix=a%20b", "prefix must be"),
    ],
)
def test_bad_redis_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        parse_store_url(url)
    assert FORMS in str(caught.value)


def test_no_password_in_any_repr_or_error() -> None:
    pytest.importorskip("redis")
    url = "redis://app:hunter2@cache.internal:6379/0?password=hunter2&prefix=x:"
    pair = open_store(url)  # no connection is made until first use
    for text in (repr(pair.sync), repr(pair.aio), repr(parse_store_url(url)), str(pair)):
        assert "hunter2" not in text
        assert "cache.internal:6379" in text
    assert "app:***@" in repr(pair.sync)
    for bad in ("redis://:hunter2@host:port/0", "postgres://app:hunter2@db/app"):
        with pytest.raises(ConfigurationError) as caught:
            open_store(bad)
        assert "hunter2" not in str(caught.value)
    pair.close()


@pytest.mark.parametrize("value", ["postgres://db/app", "memcached://h", "/var/st.db", "redis"])
def test_unknown_forms_list_the_expected_ones(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(value)
    assert FORMS in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_memory_takes_nothing_after_the_slashes() -> None:
    with pytest.raises(ConfigurationError, match="takes nothing"):
        open_store("memory://elsewhere")


class DictStore:
    """A merchant's own store: the sync protocol over a MemoryStore, by delegation."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def put(self, key: str, value: bytes, ttl: float) -> None:
        self.inner.put(key, value, ttl)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        return self.inner.add(key, value, ttl)

    def take(self, key: str) -> bytes | None:
        return self.inner.take(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def incr(self, key: str, ttl: float) -> int:
        return self.inner.incr(key, ttl)

    def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        self.inner.enqueue(entry, ttl)

    def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        return self.inner.claim(now, lease, limit)

    def reschedule(self, id: str, due_at: float, attempts: int, last_error: str | None) -> None:
        self.inner.reschedule(id, due_at, attempts, last_error)

    def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        self.inner.fail(id, attempts, last_error, ttl)

    def finish(self, id: str) -> None:
        self.inner.finish(id)

    def captures(self) -> list[CaptureEntry]:
        return self.inner.captures()

    def close(self) -> None:
        self.inner.close()


class AsyncOnly:
    """A store with only the async methods."""

    def __init__(self) -> None:
        self.inner = InlineAsyncStore(MemoryStore())

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self.inner.put(key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        return await self.inner.add(key, value, ttl)

    async def take(self, key: str) -> bytes | None:
        return await self.inner.take(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def incr(self, key: str, ttl: float) -> int:
        return await self.inner.incr(key, ttl)

    async def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        await self.inner.enqueue(entry, ttl)

    async def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        return await self.inner.claim(now, lease, limit)

    async def reschedule(
        self, id: str, due_at: float, attempts: int, last_error: str | None
    ) -> None:
        await self.inner.reschedule(id, due_at, attempts, last_error)

    async def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        await self.inner.fail(id, attempts, last_error, ttl)

    async def finish(self, id: str) -> None:
        await self.inner.finish(id)

    async def captures(self) -> list[CaptureEntry]:
        return await self.inner.captures()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
async def test_a_sync_object_gets_a_threaded_async_side(anyio_backend: str) -> None:
    mine = DictStore()
    pair = open_store(mine)
    assert pair.sync is mine
    assert isinstance(pair.aio, ThreadedAsyncStore)
    await pair.aio.put("k", b"v", 60)
    assert mine.get("k") == b"v"
    assert await pair.aio.take("k") == b"v"
    await pair.aclose()
    assert mine.inner._closed


@pytest.mark.anyio
async def test_a_pair_of_objects_is_used_as_given(anyio_backend: str) -> None:
    sync, aio = DictStore(), AsyncOnly()
    pair = open_store((sync, aio))
    assert pair == StorePair(sync, aio)
    await pair.aio.put("k", b"v", 60)
    assert await aio.get("k") == b"v"
    assert open_store(pair) == pair


def test_an_async_only_object_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigurationError, match=r"pass \(sync_store, async_store\)"):
        open_store(AsyncOnly())
    with pytest.raises(ConfigurationError, match="a store pair must be"):
        open_store((AsyncOnly(), DictStore()))


def test_objects_that_are_not_stores_are_refused_by_name() -> None:
    class Half:
        def get(self, key: str) -> None:
            return None

        def put(self, key: str, value: bytes, ttl: float) -> None:
            return None

    with pytest.raises(ConfigurationError, match="Half lacks add, take, delete, incr") as caught:
        open_store(Half())
    assert FORMS in str(caught.value)
    with pytest.raises(ConfigurationError, match="int lacks get"):
        open_store(42)


def test_without_the_redis_package_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry in sys.modules makes `import redis` raise ImportError.
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "st_middleware._store._redis", raising=False)
    monkeypatch.delattr(store_package, "_redis", raising=False)
    for url in ("redis://localhost:6379/0", "rediss://:pw@localhost/0"):
        with pytest.raises(ConfigurationError, match=r'pip install "st-middleware\[redis\]"'):
            open_store(url)
    with pytest.raises(ImportError):
        from st_middleware._store import RedisStore  # noqa: F401
