"""The one-host store (``"sqlite:////ABSOLUTE/PATH.db"``): a WAL-mode SQLite file.

Any number of threads and worker processes (gunicorn workers, say) may share
the file. Readers never wait for the writer in WAL mode; writers take turns,
waiting up to ``busy_timeout`` seconds before :class:`StoreUnavailable`.
Every operation that reads then writes runs in ``BEGIN IMMEDIATE``, so it
holds the write lock from its first read: two processes can never both
claim one capture, both take one token, or both miss an increment.

Connections come from a small pool rather than one per thread: a thread
uses one connection at a time all the same, but servers that start a
thread per request do not leak a connection per thread, ``close()`` can
close them all from any thread, and a forked child never touches its
parent's connections (SQLite forbids using a connection across ``fork``).

TTLs count on the wall clock (``time.time``), the only clock processes
share. Expired rows are never returned, and are deleted in bounded batches
at most once per ``purge_interval`` by each process, after one of its writes.

``PRAGMA synchronous=NORMAL``: in WAL mode a commit survives the process
crashing; only a power cut or kernel crash may lose the last commits.

The per-request read (``get``: "was this session signed out?") is almost
always answered "no such key". Each process remembers the keys it found
absent, and every process stamps a small shared file (``PATH.db-stamp``,
memory-mapped) with fresh random bytes after each write to the key/value
table. A remembered absence counts only while the stamp is the one read
before that lookup, so a sign-out on any process of the host is seen by the
very next request everywhere, and the hot path makes no system call (a
SQLite read releases the GIL: under a threaded server that alone cost more
than the lookup). A process killed between its write and its stamp cannot
hide that write for long: what is remembered is forgotten after
``_ABSENT_FOR`` seconds anyway.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

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
)
from ._threaded import ThreadedAsyncStore

__all__ = ["AsyncSqliteStore", "SqliteStore"]

T = TypeVar("T")

_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv ("
    " key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at)",
    "CREATE TABLE IF NOT EXISTS captures ("
    " id TEXT PRIMARY KEY, payload BLOB NOT NULL, due_at REAL NOT NULL,"
    " attempts INTEGER NOT NULL, created_at REAL NOT NULL, last_error TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'failed')),"
    " leased_until REAL NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS captures_due ON captures (state, due_at)",
    "CREATE INDEX IF NOT EXISTS captures_expires ON captures (expires_at)",
)

_GET = "SELECT value FROM kv WHERE key = ? AND expires_at > ?"
_PUT = "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)"
# One statement, so atomic without an explicit transaction: the row is written
# only if there is none, or if the one there has expired.
_ADD = (
    "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
    " WHERE kv.expires_at <= ?"
)
_DELETE = "DELETE FROM kv WHERE key = ?"
_ENQUEUE = (
    "INSERT OR REPLACE INTO captures (id, payload, due_at, attempts, created_at, last_error,"
    " state, leased_until, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The columns of a CaptureEntry, in its field order (see _entry_of).
_DUE = (
    "SELECT id, payload, due_at, attempts, created_at, last_error, state, leased_until"
    " FROM captures"
    " WHERE state = 'pending' AND due_at <= ? AND leased_until <= ? AND expires_at > ?"
    " ORDER BY due_at, id LIMIT ?"
)
_LEASE = "UPDATE captures SET leased_until = ? WHERE id = ?"
_RESCHEDULE = (
    "UPDATE captures SET due_at = ?, attempts = ?, last_error = ?, leased_until = 0"
    " WHERE id = ? AND state = 'pending' AND expires_at > ?"
)
_FAIL = (
    "UPDATE captures SET state = 'failed', attempts = ?, last_error = ?, leased_until = 0,"
    " expires_at = ? WHERE id = ? AND expires_at > ?"
)
_FINISH = "DELETE FROM captures WHERE id = ?"
_ALL = (
    "SELECT id, payload, due_at, attempts, created_at, last_error, state, leased_until"
    " FROM captures WHERE expires_at > ? ORDER BY created_at, id"
)
_PURGE_KV = "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv WHERE expires_at <= ? LIMIT ?)"
_PURGE_CAPTURES = (
    "DELETE FROM captures WHERE rowid IN (SELECT rowid FROM captures WHERE expires_at <= ? LIMIT ?)"
)

#: Rows deleted per purge and table: a purge never holds the write lock for long.
_PURGE_BATCH = 500
#: Idle connections kept; more threads at once still work, their extra connections are closed.
_MAX_IDLE = 32
#: Bytes of the shared stamp; keys remembered absent per stamp (then it starts over).
_STAMP_SIZE = 16
_MAX_ABSENT = 8192
#: Seconds a remembered absence lasts at most (within the store's 1 s promise).
_ABSENT_FOR = 0.5

# A connection must not be used, nor closed, in a child process after fork().
# Each store compares this counter with the one it saw, and on a change it
# forgets its idle connections, keeping them referenced here so that garbage
# collection never closes them in the child either (which could checkpoint or
# delete the parent's WAL file under it).
_fork_generation = 0
_INHERITED: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SqliteStore:
    """A :class:`~._base.Store` in a SQLite file shared by the processes of one host.

    ``path`` must be absolute; its directory must exist and be writable (the
    WAL and shared-memory files live beside the database). The file and its
    tables are created if missing. Opening fails with
    :class:`StoreUnavailable` if the file cannot be opened or is not a store.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        purge_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not os.path.isabs(path):
            raise ValueError("the SQLite store needs an absolute path: sqlite:////ABSOLUTE/PATH.db")
        self.path = path
        self._busy_timeout = busy_timeout
        self._purge_interval = purge_interval
        self._clock = clock
        self._idle: list[sqlite3.Connection] = []
        self._generation = _fork_generation
        self._purge_at = 0.0
        self._closed = False
        conn = self._acquire()
        try:
            self._create_schema(conn)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._release(conn)
        self._stamp = _map_stamp(path + "-stamp")
        #: (the stamp these keys were found absent under, forget them after, the keys)
        self._absent: tuple[bytes, float, dict[str, None]] = (b"", 0.0, {})

    def __repr__(self) -> str:
        return f"SqliteStore('sqlite:///{self.path}')"

    # -- key/value -----------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get`."""
        check_key(key)
        if self._closed:
            raise StoreUnavailable(f"the SQLite store at {self.path} is closed")
        # Read before the lookup: a write stamped after it makes this absence void.
        stamp = self._stamp[:_STAMP_SIZE]
        seen, until, absent = self._absent
        if key in absent and seen == stamp and time.monotonic() < until:
            return None
        # Written out rather than through _run: this is the per-request check.
        conn = self._acquire()
        try:
            row = conn.execute(_GET, (key, self._clock())).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._release(conn)
        if row is not None:
            value: bytes = row[0]
            return value
        now = time.monotonic()
        if seen != stamp or now >= until or len(absent) >= _MAX_ABSENT:
            # One tuple swapped in: threads never see a stamp with another's keys.
            self._absent = (stamp, now + _ABSENT_FOR, {key: None})
        else:
            absent[key] = None
        return None

    def put(self, key: str, value: bytes, ttl: float) -> None:
        """See :meth:`Store.put`."""
        check_key(key)
        check_value(value)
        ttl = check_ttl(ttl)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(_PUT, (key, value, now + ttl))

        self._run(work, wrote=True)
        self._restamp()

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """See :meth:`Store.add`."""
        check_key(key)
        check_value(value)
        ttl = check_ttl(ttl)

        def work(conn: sqlite3.Connection, now: float) -> bool:
            return conn.execute(_ADD, (key, value, now + ttl, now)).rowcount == 1

        added = self._run(work, wrote=True)
        if added:
            self._restamp()
        return added

    def take(self, key: str) -> bytes | None:
        """See :meth:`Store.take`."""
        check_key(key)

        def work(conn: sqlite3.Connection, now: float) -> bytes | None:
            row = conn.execute(_GET, (key, now)).fetchone()
            if row is None:
                return None
            conn.execute(_DELETE, (key,))
            value: bytes = row[0]
            return value

        return self._run(work, transaction=True)

    def delete(self, key: str) -> None:
        """See :meth:`Store.delete`."""
        check_key(key)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(_DELETE, (key,))

        self._run(work)

    def incr(self, key: str, ttl: float) -> int:
        """See :meth:`Store.incr`."""
        check_key(key)
        ttl = check_ttl(ttl)

        def work(conn: sqlite3.Connection, now: float) -> int:
            row = conn.execute(
                "SELECT value, expires_at FROM kv WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            count, expires_at = (1, now + ttl) if row is None else (_counter(row[0]) + 1, row[1])
            # Decimal text, as Redis keeps counters: `get` reads b"3" on every backend.
            conn.execute(_PUT, (key, str(count).encode(), expires_at))
            return count

        count = self._run(work, transaction=True, wrote=True)
        self._restamp()
        return count

    def _restamp(self) -> None:
        """After a committed write of a key: every process forgets the keys it found absent.

        Deletions need none (what was absent stays absent). Fresh random bytes,
        not a counter: two processes writing at once can never leave the same
        stamp that a reader saw before either write.
        """
        self._stamp[:_STAMP_SIZE] = os.urandom(_STAMP_SIZE)

    # -- the capture outbox ------------------------------------------------------------

    def enqueue(self, entry: CaptureEntry, ttl: float) -> None:
        """See :meth:`Store.enqueue`."""
        if not isinstance(entry, CaptureEntry):
            raise TypeError("enqueue takes a CaptureEntry")
        ttl = check_ttl(ttl)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(_ENQUEUE, (*_row_of(entry), now + ttl))

        self._run(work, wrote=True)

    def claim(self, now: float, lease: float, limit: int) -> list[CaptureEntry]:
        """See :meth:`Store.claim`."""
        now = check_time(now, "now")
        until = now + check_lease(lease)
        limit = check_limit(limit)

        def work(conn: sqlite3.Connection, alive: float) -> list[CaptureEntry]:
            rows = conn.execute(_DUE, (now, now, alive, limit)).fetchall()
            conn.executemany(_LEASE, [(until, row[0]) for row in rows])
            return [_entry_of(row, leased_until=until) for row in rows]

        return self._run(work, transaction=True)

    def reschedule(self, id: str, due_at: float, attempts: int, last_error: str | None) -> None:
        """See :meth:`Store.reschedule`."""
        check_key(id)
        due_at = check_time(due_at, "due_at")
        check_attempts(attempts)
        check_error(last_error)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(_RESCHEDULE, (due_at, attempts, last_error, id, now))

        self._run(work)

    def fail(self, id: str, attempts: int, last_error: str, ttl: float) -> None:
        """See :meth:`Store.fail`."""
        check_key(id)
        check_attempts(attempts)
        check_error(last_error)
        ttl = check_ttl(ttl)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(_FAIL, (attempts, last_error, now + ttl, id, now))

        self._run(work, wrote=True)

    def finish(self, id: str) -> None:
        """See :meth:`Store.finish`."""
        check_key(id)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(_FINISH, (id,))

        self._run(work)

    def captures(self) -> list[CaptureEntry]:
        """See :meth:`Store.captures`."""

        def work(conn: sqlite3.Connection, now: float) -> list[CaptureEntry]:
            return [_entry_of(row) for row in conn.execute(_ALL, (now,)).fetchall()]

        return self._run(work)

    def close(self) -> None:
        """Close the idle connections (busy ones close when released); idempotent."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- connections -------------------------------------------------------------------

    def _run(
        self,
        work: Callable[[sqlite3.Connection, float], T],
        *,
        transaction: bool = False,
        wrote: bool = False,
    ) -> T:
        """Run ``work(conn, now)`` on a pooled connection, in a write transaction if asked.

        ``sqlite3`` errors become :class:`StoreUnavailable`; a transaction left
        open by any exception is rolled back when the connection is released.
        """
        conn = self._acquire()
        try:
            now = self._clock()
            if transaction:
                # IMMEDIATE takes the write lock now (waiting up to busy_timeout),
                # so no other process can change what this transaction reads.
                conn.execute("BEGIN IMMEDIATE")
            result = work(conn, now)
            if transaction:
                conn.execute("COMMIT")
            if wrote:
                self._maybe_purge(conn, now)
            return result
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._release(conn)

    def _acquire(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable(f"the SQLite store at {self.path} is closed")
        if self._generation != _fork_generation:
            _INHERITED.extend(self._idle)
            self._idle = []
            self._generation = _fork_generation
        try:
            # list.pop and list.append are atomic: no lock needed around the pool.
            return self._idle.pop()
        except IndexError:
            pass
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # used by one thread at a time, closed by any
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._unavailable(exc) from exc
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                conn.close()
                return
        if self._closed or len(self._idle) >= _MAX_IDLE:
            conn.close()
            return
        self._idle.append(conn)
        if self._closed:  # close() ran in another thread meanwhile: drain again
            self.close()

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        # WAL is a property of the file: set once, every later connection uses it.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the SQLite store at {self.path} was written by a newer st-middleware "
                f"(schema {version}, this one knows {_SCHEMA_VERSION})"
            )
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        conn.execute("COMMIT")

    def _maybe_purge(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete a batch of expired rows, at most once per ``purge_interval``."""
        if now < self._purge_at:
            return
        # Set first: a purge that fails is not retried on every write.
        self._purge_at = now + self._purge_interval
        try:
            kv = conn.execute(_PURGE_KV, (now, _PURGE_BATCH)).rowcount
            captures = conn.execute(_PURGE_CAPTURES, (now, _PURGE_BATCH)).rowcount
        except sqlite3.Error:
            return  # the write itself succeeded; a later purge catches up
        if max(kv, captures) >= _PURGE_BATCH:
            self._purge_at = now  # a backlog: keep going on the next write

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        # sqlite3 messages name the failure ("database is locked"), never a value.
        return StoreUnavailable(f"the SQLite store at {self.path}: {exc}")


def _map_stamp(path: str) -> mmap.mmap:
    """The shared stamp file beside the database, mapped (created if missing)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreUnavailable(f"the SQLite store cannot open {path}: {exc.strerror}") from None
    try:
        if os.fstat(fd).st_size < _STAMP_SIZE:
            os.ftruncate(fd, _STAMP_SIZE)
        return mmap.mmap(fd, _STAMP_SIZE)
    finally:
        os.close(fd)


class AsyncSqliteStore(ThreadedAsyncStore):
    """The async side of a :class:`SqliteStore`: its calls run in threads, except ``get``.

    ``get`` (the revocation check on every signed-in request) runs inline: a
    WAL reader never waits for a lock, and the warm lookup takes a few
    microseconds, while a hop through ``asyncio.to_thread`` costs tens.
    Writes may wait up to ``busy_timeout`` for the lock, so they go to a thread.
    """

    store: SqliteStore

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(store)

    async def get(self, key: str) -> bytes | None:
        """See :meth:`Store.get` (inline, see the class docstring)."""
        return self.store.get(key)


def _row_of(entry: CaptureEntry) -> tuple[object, ...]:
    return (
        entry.id,
        entry.payload,
        entry.due_at,
        entry.attempts,
        entry.created_at,
        entry.last_error,
        entry.state,
        entry.leased_until,
    )


def _entry_of(row: Any, *, leased_until: float | None = None) -> CaptureEntry:
    id, payload, due_at, attempts, created_at, last_error, state, leased = row
    return CaptureEntry(
        id=id,
        payload=payload,
        due_at=due_at,
        attempts=attempts,
        created_at=created_at,
        last_error=last_error,
        state="failed" if state == "failed" else "pending",
        leased_until=leased if leased_until is None else leased_until,
    )


def _counter(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("the value at this key is not a counter") from None
