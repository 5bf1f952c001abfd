"""Fixtures of the store tests: every backend, both sides, and a real redis-server.

``store`` runs a test against each backend (memory, a SQLite file, a real
Redis) and each side: the ``AsyncStore`` itself, or the sync ``Store``
behind an inline async wrapper, so one test body checks both protocols.

Redis: a session-wide ``redis-server`` (``tests/store/redis_server.py``).
When it is not installed the Redis cases are skipped, unless
``ST_REQUIRE_REDIS=1`` (CI), which makes them fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, required_binary

from st_middleware._store import AsyncStore, InlineAsyncStore, StorePair, open_store

BACKENDS = ["memory", "sqlite", "redis"]
DURABLE = ["sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server on 127.0.0.1 for the whole session (skipped, or failed, if missing)."""
    server = RedisServer(required_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The server's URL, running (a test may have killed it) and empty."""
    if not redis_server.running:
        redis_server.start()
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url


def url_of(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL for ``backend``."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL, once per backend."""
    return url_of(str(request.param), request, tmp_path)


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh URL of a store that several processes can share."""
    return url_of(str(request.param), request, tmp_path)


@pytest.fixture
async def pair(anyio_backend: str, store_url: str) -> AsyncIterator[StorePair]:
    """Both sides of a fresh store; closed afterwards."""
    opened = open_store(store_url)
    yield opened
    await opened.aclose()


@pytest.fixture(params=["sync", "async"])
def store(request: pytest.FixtureRequest, pair: StorePair) -> AsyncStore:
    """One side of a fresh store, always called with ``await``."""
    if request.param == "sync":
        return InlineAsyncStore(pair.sync)
    return pair.aio
