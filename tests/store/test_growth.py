"""No unbounded growth: what has expired leaves the store without anyone asking.

Memory and SQLite sweep expired entries themselves (amortized over writes);
the tests write many short-lived keys, wait, write more, and look at what is
held. Redis expires keys natively: the test checks that every key the store
writes carries a TTL, and that the keyspace is empty once they have run out.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from st_middleware._store import CaptureEntry, MemoryStore, SqliteStore, open_store

MANY = 10_000


def capture(i: int) -> CaptureEntry:
    return CaptureEntry(f"k{i}:capture", b"p", 100.0, 0, 1.0, None, "pending")


def test_memory_sweeps_expired_entries_on_later_writes() -> None:
    store = MemoryStore()
    for i in range(MANY):
        store.put(f"revoked:{i}", b"1", 0.2)
        store.enqueue(capture(i), 0.2) if i % 10 == 0 else None
    assert len(store._kv) + len(store._outbox) > MANY
    time.sleep(0.3)
    for i in range(MANY // 2 + 1000):  # a sweep comes within len/2 writes (+ the floor)
        store.put(f"live:{i}", b"1", 60)
    assert len(store._outbox) == 0
    assert len(store._kv) <= MANY // 2 + 1000
    assert all(key.startswith("live:") for key in store._kv)


def test_memory_stays_bounded_under_steady_short_lived_writes() -> None:
    store = MemoryStore()
    peak = 0
    for round in range(6):
        for i in range(5000):
            store.put(f"r{round}:{i}", b"1", 0.1)
        peak = max(peak, len(store._kv))
        time.sleep(0.15)
    # Each round's keys are dead by the next: never more than ~2 rounds held.
    assert peak <= 2 * 5000 + 1000


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


class Clock:
    """A wall clock the test moves by hand (SQLite times TTLs and purges with it)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sqlite_purges_expired_rows_in_batches(tmp_path: Path) -> None:
    path, clock = tmp_path / "st.db", Clock()
    store = SqliteStore(str(path), purge_interval=1.0, clock=clock)
    for i in range(MANY):
        store.put(f"revoked:{i}", b"1", 5.0)
    for i in range(2000):
        store.enqueue(capture(i), 5.0)
    assert rows(path, "kv") == MANY
    assert rows(path, "captures") == 2000
    clock.now += 6.0
    assert store.get("revoked:0") is None
    # A purge deletes at most 500 rows per table, and runs again on the very
    # next write while there is a backlog: 10,000 rows are gone in 20 writes.
    for i in range(19):
        store.put(f"live:{i}", b"1", 60)
    assert rows(path, "kv") == 19 + 500
    store.put("live:19", b"1", 60)
    assert rows(path, "kv") == 20
    assert rows(path, "captures") == 0
    store.close()


def test_sqlite_purge_runs_at_most_once_per_interval(tmp_path: Path) -> None:
    path, clock = tmp_path / "st.db", Clock()
    store = SqliteStore(str(path), purge_interval=60.0, clock=clock)
    store.put("first", b"1", 600)  # this write purges (nothing yet); the next purge is due in 60 s
    for i in range(100):
        store.put(f"short:{i}", b"1", 1.0)
    clock.now += 30.0
    store.put("later", b"1", 600)
    assert rows(path, "kv") == 102  # expired rows wait for the next purge...
    assert store.get("short:0") is None  # ...but are never returned
    clock.now += 31.0
    store.put("after", b"1", 600)
    assert rows(path, "kv") == 3
    store.close()


def all_keys_with_ttl(url: str) -> dict[bytes, int]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {key: int(client.pttl(key)) for key in client.scan_iter(count=1000)}
    finally:
        client.close()


def test_every_redis_key_has_a_ttl_and_all_run_out(redis_url: str) -> None:
    store = open_store(redis_url).sync
    store.put("put", b"v", 0.5)
    store.add("add", b"v", 0.5)
    store.put("taken", b"v", 0.5)
    store.take("taken")
    store.incr("incr", 0.5)
    store.incr("incr", 0.5)
    for i in range(20):
        store.enqueue(capture(i), 0.5)
    store.claim(100.0, 30.0, 5)
    store.reschedule("k0:capture", 101.0, 1, "timeout")
    store.claim(200.0, 30.0, 5)  # also moves ended leases back to the due queue
    store.fail("k1:capture", 2, "charge_expired", 0.5)
    store.finish("k2:capture")
    store.captures()
    held = all_keys_with_ttl(redis_url)
    assert b"st:outbox:due" in held
    assert b"st:outbox:leased" in held
    assert b"st:outbox:all" in held
    assert len(held) == 3 + 19 + 3  # put, add, incr; 20 entries less one finished; indexes
    no_ttl = [key for key, ttl in held.items() if not 0 < ttl <= 500]
    assert no_ttl == []
    time.sleep(0.7)
    assert all_keys_with_ttl(redis_url) == {}
    store.close()


@pytest.mark.parametrize("prefix", ["st:", "shop-a:"])
def test_redis_keys_stay_under_the_prefix(redis_url: str, prefix: str) -> None:
    store = open_store(f"{redis_url}?prefix={prefix}").sync
    other = open_store(f"{redis_url}?prefix=other:").sync
    store.put("k", b"mine", 60)
    store.enqueue(capture(1), 60)
    assert other.get("k") is None
    assert other.captures() == []
    assert all(key.startswith(prefix.encode()) for key in all_keys_with_ttl(redis_url))
    store.close()
    other.close()
