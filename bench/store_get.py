"""How long one ``get`` takes, per backend and side (a revocation check per request).

    .venv/bin/python -m bench.store_get [--redis-url URL]

Without ``--redis-url`` it starts a throwaway redis-server when one is
installed. Prints microseconds per call (median of 5 runs), for a key that
is present; SQLite's async side is measured both inline (what
AsyncSqliteStore does) and through ``asyncio.to_thread`` (ThreadedAsyncStore).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# The store tests' throwaway redis-server (tests/store/redis_server.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "store"))

from redis_server import RedisServer, redis_server_binary

from st_middleware._store import (
    AsyncStore,
    Store,
    ThreadedAsyncStore,
    open_store,
)

KEY = "revoked:0123456789abcdef0123456789abcdef"


def per_call_sync(get: Callable[[str], object], n: int) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            get(KEY)
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def per_call_async(get: Callable[[str], Awaitable[object]], n: int) -> float:
    async def run() -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                await get(KEY)
            runs.append((time.perf_counter() - started) / n * 1e6)
        return statistics.median(runs)

    return asyncio.run(run())


def measure(name: str, sync: Store, aio: AsyncStore, n: int) -> None:
    sync.put(KEY, b"1", 3600)
    assert sync.get(KEY) == b"1"
    print(f"{name:<28} sync  {per_call_sync(sync.get, n):8.2f} us")
    print(f"{name:<28} async {per_call_async(aio.get, n):8.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        run(Path(directory), args.redis_url)


def run(directory: Path, url: str | None) -> None:
    memory = open_store("memory://")
    measure("memory", memory.sync, memory.aio, 200_000)

    sqlite = open_store(f"sqlite:///{directory}/bench.db")
    measure("sqlite (async get inline)", sqlite.sync, sqlite.aio, 50_000)
    threaded = ThreadedAsyncStore(sqlite.sync)
    print(f"{'sqlite (async via thread)':<28} async {per_call_async(threaded.get, 10_000):8.2f} us")

    sqlite.close()

    server = None
    if url is None and (binary := redis_server_binary()) is not None:
        server = RedisServer(binary, directory)
        server.start()
        url = server.url
    if url is None:
        print("redis: skipped (no redis-server; pass --redis-url)")
        return
    try:
        redis = open_store(url)
        measure("redis (loopback)", redis.sync, redis.aio, 10_000)
        redis.close()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
