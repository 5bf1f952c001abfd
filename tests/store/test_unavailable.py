"""When the backing engine fails: StoreUnavailable, quickly, and nothing else.

Redis is killed mid-test (SIGKILL, as a crash) and restarted on the same
port: the same store objects must work again without being rebuilt. A
server that accepts connections but never answers must fail within the
socket timeout. SQLite fails when the file cannot be opened, and when
another process holds the write lock past the busy timeout.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer

from st_middleware._store import (
    AsyncSqliteStore,
    AsyncStore,
    CaptureEntry,
    SqliteStore,
    Store,
    StoreUnavailable,
    open_store,
)

SECRET = b"sealed-token-value"
ENTRY = CaptureEntry("k1:capture", SECRET, 100.0, 0, 1.0, None, "pending")


def sync_calls(store: Store) -> dict[str, Callable[[], object]]:
    return {
        "get": lambda: store.get("k"),
        "put": lambda: store.put("k", SECRET, 60),
        "add": lambda: store.add("k", SECRET, 60),
        "take": lambda: store.take("k"),
        "delete": lambda: store.delete("k"),
        "incr": lambda: store.incr("n", 60),
        "enqueue": lambda: store.enqueue(ENTRY, 60),
        "claim": lambda: store.claim(100.0, 30.0, 10),
        "reschedule": lambda: store.reschedule(ENTRY.id, 101.0, 1, None),
        "fail": lambda: store.fail(ENTRY.id, 1, "x", 60),
        "finish": lambda: store.finish(ENTRY.id),
        "captures": store.captures,
    }


def async_calls(store: AsyncStore) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "get": lambda: store.get("k"),
        "put": lambda: store.put("k", SECRET, 60),
        "add": lambda: store.add("k", SECRET, 60),
        "take": lambda: store.take("k"),
        "delete": lambda: store.delete("k"),
        "incr": lambda: store.incr("n", 60),
        "enqueue": lambda: store.enqueue(ENTRY, 60),
        "claim": lambda: store.claim(100.0, 30.0, 10),
        "reschedule": lambda: store.reschedule(ENTRY.id, 101.0, 1, None),
        "fail": lambda: store.fail(ENTRY.id, 1, "x", 60),
        "finish": lambda: store.finish(ENTRY.id),
        "captures": store.captures,
    }


def assert_sync_unavailable(store: Store, within: float) -> None:
    for name, call in sync_calls(store).items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            call()
        took = time.monotonic() - started
        assert took < within, f"{name} took {took:.2f} s"
        assert SECRET.decode() not in str(caught.value)


async def assert_async_unavailable(store: AsyncStore, within: float) -> None:
    for name, call in async_calls(store).items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await call()
        took = time.monotonic() - started
        assert took < within, f"{name} took {took:.2f} s"
        assert SECRET.decode() not in str(caught.value)


# -- Redis -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_redis_killed_then_restarted(
    anyio_backend: str, redis_server: RedisServer, redis_url: str
) -> None:
    pair = open_store(redis_url)
    # Warm both pools, and load the scripts, so that stale connections are in play.
    pair.sync.enqueue(ENTRY, 60)
    assert [e.id for e in await pair.aio.claim(100.0, 30.0, 10)] == [ENTRY.id]
    pair.sync.put("k", b"v", 60)
    assert await pair.aio.get("k") == b"v"

    redis_server.stop()
    try:
        # Connection refused is immediate; the command timeout (3 s) bounds the rest.
        assert_sync_unavailable(pair.sync, within=3.5)
        await assert_async_unavailable(pair.aio, within=3.5)
    finally:
        redis_server.start()

    # Same objects, new server (empty: no persistence); scripts are re-sent.
    pair.sync.put("k", b"again", 60)
    assert await pair.aio.get("k") == b"again"
    await pair.aio.enqueue(ENTRY, 60)
    assert [e.id for e in pair.sync.claim(100.0, 30.0, 10)] == [ENTRY.id]
    assert await pair.aio.incr("n", 60) == 1
    assert pair.sync.take("k") == b"again"
    await pair.aclose()


class Silent:
    """A TCP listener that never accepts nor answers.

    ``full``: its backlog is filled first (Linux completes ``backlog + 1``
    handshakes without ``accept``), so connecting hangs: the connect timeout.
    Otherwise connecting succeeds and commands get no reply: the command timeout.
    """

    def __init__(self, *, full: bool) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0 if full else 16)
        self.port = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port)) if full else None

    def close(self) -> None:
        if self.filler is not None:
            self.filler.close()
        self.listener.close()


@pytest.fixture(params=["connect", "command"])
def silent(request: pytest.FixtureRequest) -> Iterator[Silent]:
    server = Silent(full=request.param == "connect")
    yield server
    server.close()


@pytest.mark.anyio
async def test_a_redis_that_never_answers_fails_within_the_timeouts(
    anyio_backend: str, silent: Silent
) -> None:
    pytest.importorskip("redis")
    from st_middleware._store import AsyncRedisStore, RedisStore

    url = f"redis://127.0.0.1:{silent.port}/0"
    options: dict[str, Any] = {"connect_timeout": 0.15, "timeout": 0.15}
    sync, aio = RedisStore(url, **options), AsyncRedisStore(url, **options)
    assert_sync_unavailable(sync, within=1.0)
    await assert_async_unavailable(aio, within=1.0)
    sync.close()
    await aio.aclose()


# -- SQLite ------------------------------------------------------------------------------


def test_sqlite_in_a_missing_directory_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="unable to open") as caught:
        open_store(f"sqlite:///{tmp_path}/missing/st.db")
    assert f"{tmp_path}/missing/st.db" in str(caught.value)


def test_sqlite_on_a_directory_or_a_foreign_file_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{tmp_path}")
    foreign = tmp_path / "notes.db"
    foreign.write_bytes(b"not a database at all, " * 100)
    with pytest.raises(StoreUnavailable, match="not a database"):
        open_store(f"sqlite:///{foreign}")


NOBODY = 65534


def as_another_user(work: Callable[[], object]) -> str:
    """Run ``work`` as an unprivileged user; return "ok", "unavailable" or "error".

    Permissions do not stop root, so as root this forks and drops to
    ``nobody`` in the child (whose Python is already loaded: the venv's
    interpreter may sit where ``nobody`` cannot read it).
    """
    if os.geteuid() != 0:
        try:
            work()
        except StoreUnavailable:
            return "unavailable"
        return "ok"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 2
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            work()
            code = 0
        except StoreUnavailable:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return {0: "ok", 1: "unavailable"}.get(os.waitstatus_to_exitcode(status), "error")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's tmp_path is private to its user)."""
    directory = Path(tempfile.mkdtemp(prefix="st-store-"))
    directory.chmod(0o755)
    yield directory
    directory.chmod(0o755)
    shutil.rmtree(directory)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork() to drop privileges")
def test_sqlite_in_a_read_only_directory_fails_at_open(shared_dir: Path) -> None:
    read_only = shared_dir / "ro"
    read_only.mkdir(mode=0o555)
    read_only.chmod(0o555)
    assert as_another_user(lambda: open_store(f"sqlite:///{read_only}/st.db")) == "unavailable"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork() to drop privileges")
def test_sqlite_file_the_worker_user_cannot_write_fails_at_open(shared_dir: Path) -> None:
    # Created by root (a deploy step, say), then served by an unprivileged worker.
    path = shared_dir / "st.db"
    open_store(f"sqlite:///{path}").close()
    for leftover in shared_dir.iterdir():
        leftover.chmod(0o644)
    assert as_another_user(lambda: open_store(f"sqlite:///{path}")) == "unavailable"
    # The check is real: the same user with write access opens it.
    shared_dir.chmod(0o777)
    for leftover in shared_dir.iterdir():
        leftover.chmod(0o666)
    assert as_another_user(lambda: open_store(f"sqlite:///{path}").sync.put("k", b"v", 60)) == "ok"


@pytest.mark.anyio
async def test_sqlite_locked_past_the_busy_timeout(anyio_backend: str, tmp_path: Path) -> None:
    path = str(tmp_path / "st.db")
    store = SqliteStore(path, busy_timeout=0.2)
    store.put("k", b"v", 60)
    store.enqueue(ENTRY, 60)
    other = sqlite3.connect(path, isolation_level=None)  # another process, as far as locks go
    other.execute("BEGIN EXCLUSIVE")
    try:
        # WAL readers do not wait for the writer: the revocation check still answers.
        assert store.get("k") == b"v"
        assert [e.id for e in store.captures()] == [ENTRY.id]
        writes = ["put", "add", "take", "incr", "enqueue", "claim", "reschedule", "fail"]
        for name in writes:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked"):
                sync_calls(store)[name]()
            assert 0.15 < time.monotonic() - started < 2.0, name
        aio = AsyncSqliteStore(store)
        with pytest.raises(StoreUnavailable, match="locked"):
            await aio.claim(100.0, 30.0, 10)
        assert await aio.get("k") == b"v"
    finally:
        other.execute("ROLLBACK")
        other.close()
    # The lock is gone: the same store works, and nothing half-done was kept.
    assert [e.id for e in store.claim(100.0, 30.0, 10)] == [ENTRY.id]
    assert store.take("k") == b"v"
    store.close()
