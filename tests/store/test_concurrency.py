"""Races: threads, and separate processes, on one store at once.

Two processes share a SQLite file or a Redis server as two gunicorn workers
(or two hosts) would; each runs ``contender.py``, and all of them start on
the same signal. The claims must partition the outbox (each entry exactly
once per lease), and ``add`` and ``take`` must each have one winner per key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from st_middleware._store import CaptureEntry, Store, _sqlite, open_store

CONTENDER = Path(__file__).with_name("contender.py")
ENTRIES = 200
KEYS = 200
T = TypeVar("T")


def fill_outbox(store: Store) -> None:
    for i in range(ENTRIES):
        store.enqueue(
            CaptureEntry(f"k{i:03}:capture", b"p", float(i), 0, 0.0, None, "pending"), 600
        )


def in_threads(count: int, work: Callable[[Store], T], url: str) -> list[T]:
    """Run ``work`` in ``count`` threads at once, each with the store opened from ``url``.

    Memory stores cannot be reopened by URL, so for them all threads share one.
    """
    shared = open_store(url).sync if url == "memory://" else None
    stores = [shared or open_store(url).sync for _ in range(count)]
    start = threading.Barrier(count)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(stores[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return [result for result in results if result is not None]


def in_processes(count: int, url: str, mode: str) -> list[list[str]]:
    """Run ``count`` contender processes at once; return what each printed."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(CONTENDER), url, mode, str(KEYS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
        for process in processes:  # every one is waiting: let them all go
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [process.returncode for process in processes] == [0] * count
    return [json.loads(output) for output in outputs]


def claim_all(store: Store) -> list[str]:
    ids: list[str] = []
    while batch := store.claim(1e6, 600.0, 3):
        ids.extend(entry.id for entry in batch)
    return ids


def assert_partition(parts: list[list[str]], expected: int) -> None:
    counts = Counter(id for part in parts for id in part)
    assert len(counts) == expected
    assert set(counts.values()) == {1}, [id for id, n in counts.items() if n > 1]


def test_threads_claim_each_entry_exactly_once(store_url: str) -> None:
    store = open_store(store_url).sync
    fill_outbox(store)
    if store_url == "memory://":
        # Memory stores cannot be reopened by URL: the threads share this one.
        parts = in_threads(4, lambda _: claim_all(store), store_url)
    else:
        parts = in_threads(4, claim_all, store_url)
    # Not every thread need win something: SQLite's busy handler sleeps between
    # tries, so one thread may take all while the others wait. Never twice, though.
    assert_partition(parts, ENTRIES)


def test_processes_claim_each_entry_exactly_once(durable_url: str) -> None:
    fill_outbox(open_store(durable_url).sync)
    parts = in_processes(2, durable_url, "claim")
    assert_partition(parts, ENTRIES)
    # And nothing is left to claim before the leases end.
    assert open_store(durable_url).sync.claim(1e6, 600.0, 1000) == []


def test_processes_race_add_and_take_with_one_winner_per_key(durable_url: str) -> None:
    added = in_processes(2, durable_url, "add")
    assert_partition(added, KEYS)
    taken = in_processes(2, durable_url, "take")
    assert_partition(taken, KEYS)
    store = open_store(durable_url).sync
    assert all(store.get(f"race:{i}") is None for i in range(KEYS))


def test_threads_race_add_take_and_incr(store_url: str) -> None:
    shared = open_store(store_url).sync

    def add_all(store: Store) -> list[str]:
        me = str(threading.get_ident()).encode()
        return [f"race:{i}" for i in range(KEYS) if store.add(f"race:{i}", me, 60)]

    def take_all(store: Store) -> list[str]:
        return [f"race:{i}" for i in range(KEYS) if store.take(f"race:{i}") is not None]

    def count_up(store: Store) -> list[int]:
        return [store.incr("hits", 60) for _ in range(250)]

    def on(work: Callable[[Store], T]) -> Callable[[Store], T]:
        # Memory stores cannot be reopened by URL: all threads use the one made above.
        return (lambda _: work(shared)) if store_url == "memory://" else work

    assert_partition(in_threads(4, on(add_all), store_url), KEYS)
    assert_partition(in_threads(4, on(take_all), store_url), KEYS)
    counts = in_threads(4, on(count_up), store_url)
    assert sorted(n for part in counts for n in part) == list(range(1, 1001))
    assert shared.get("hits") == b"1000"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_opens_its_own_sqlite_connections(tmp_path: Path) -> None:
    # gunicorn --preload: the store is opened in the master, used in forked workers.
    store = open_store(f"sqlite:///{tmp_path}/st.db").sync
    store.put("parent", b"1", 60)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            store.put("child", b"2", 60)
            inherited = any(conn in _sqlite._INHERITED for conn in store._idle)  # type: ignore[attr-defined]
            code = 0 if store.get("parent") == b"1" and _sqlite._INHERITED and not inherited else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("child") == b"2"  # the parent's own connection still works
    store.put("parent", b"3", 60)
    assert store.get("parent") == b"3"
