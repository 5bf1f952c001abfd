"""The SQLite store remembers absent keys, and never past a write on any process.

``get`` is the revocation check of every signed-in request; on SQLite it
answers "absent" from memory while the shared stamp file is unchanged. These
tests open the same file twice (as two gunicorn workers would; the durable
suite does it with real processes) and check that every kind of write made
by one is seen by the other's very next ``get``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from st_middleware._store import StoreUnavailable
from st_middleware._store import _sqlite as sqlite_store
from st_middleware._store._sqlite import SqliteStore

KEY = "revoked:abcdefabcdefabcdefabcd"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[SqliteStore, SqliteStore]:
    path = str(tmp_path / "store.db")
    return SqliteStore(path), SqliteStore(path)


def test_a_put_elsewhere_is_seen_by_the_next_get(pair: tuple[SqliteStore, SqliteStore]) -> None:
    reader, writer = pair
    assert reader.get(KEY) is None
    assert reader.get(KEY) is None  # now remembered
    writer.put(KEY, b"1", 60)
    assert reader.get(KEY) == b"1"


def test_an_add_and_an_incr_elsewhere_are_seen(pair: tuple[SqliteStore, SqliteStore]) -> None:
    reader, writer = pair
    assert reader.get("device:x") is None
    assert reader.get("count:x") is None
    assert writer.add("device:x", b"waiting", 60)
    assert reader.get("device:x") == b"waiting"
    assert reader.get("count:x") is None
    assert writer.incr("count:x", 60) == 1
    assert reader.get("count:x") == b"1"


def test_a_failed_add_leaves_the_memory_alone(pair: tuple[SqliteStore, SqliteStore]) -> None:
    reader, writer = pair
    writer.put("device:y", b"one", 60)
    assert reader.get(KEY) is None
    before = reader._absent
    assert not writer.add("device:y", b"two", 60)  # nothing written
    assert reader.get(KEY) is None
    assert reader._absent[2] is before[2]


def test_a_write_from_another_process_is_seen(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    reader = SqliteStore(path)
    assert reader.get(KEY) is None
    code = (
        "import sys; from st_middleware._store._sqlite import SqliteStore; "
        f"SqliteStore(sys.argv[1]).put({KEY!r}, b'1', 60)"
    )
    subprocess.run([sys.executable, "-c", code, path], check=True, timeout=60)
    assert reader.get(KEY) == b"1"


def test_a_write_without_a_stamp_is_seen_within_the_bound(
    pair: tuple[SqliteStore, SqliteStore],
) -> None:
    # A process killed between its commit and its stamp: the absence expires anyway.
    reader, _ = pair
    assert reader.get(KEY) is None
    with sqlite3.connect(reader.path, isolation_level=None) as raw:
        raw.execute("INSERT INTO kv VALUES (?, ?, ?)", (KEY, b"1", time.time() + 60))
    assert reader.get(KEY) is None  # remembered: no stamp was written
    time.sleep(sqlite_store._ABSENT_FOR + 0.1)
    assert reader.get(KEY) == b"1"


def test_the_memory_is_bounded(
    pair: tuple[SqliteStore, SqliteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "_MAX_ABSENT", 10)
    reader, _ = pair
    for n in range(25):
        assert reader.get(f"revoked:{n}") is None
    assert len(reader._absent[2]) <= 10


def test_a_closed_store_refuses_even_a_remembered_key(
    pair: tuple[SqliteStore, SqliteStore],
) -> None:
    reader, _ = pair
    assert reader.get(KEY) is None
    reader.close()
    with pytest.raises(StoreUnavailable):
        reader.get(KEY)


def test_the_stamp_file_lives_beside_the_database(tmp_path: Path) -> None:
    SqliteStore(str(tmp_path / "store.db"))
    assert (tmp_path / "store.db-stamp").stat().st_size == sqlite_store._STAMP_SIZE
