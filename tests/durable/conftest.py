"""Fixtures of the durable tests: an emulator, real servers, a real Redis, all per test.

Each test gets its own emulator (its faults and ledger belong to that test
alone) and its own server set, closed afterwards whatever happened. Redis is
Debian's ``redis-server`` driven by ``tests/store/redis_server.py``; when it
is missing the Redis cases are skipped, unless ``ST_REQUIRE_REDIS=1`` (CI).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The store tests' redis-server driver, reused as it is (tests/store is only on
# sys.path when its own conftest has been collected).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))

from durable_support import Servers
from redis_server import RedisServer, required_binary

from st_middleware.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A Small Transfers emulator on 127.0.0.1 for this test only."""
    with Emulator(port=0) as emu:
        yield emu


@pytest.fixture
def servers(emulator: Emulator, tmp_path: Path) -> Iterator[Servers]:
    """Start servers with ``servers.start(...)``; every one is stopped after the test."""
    workdir = tmp_path / "servers"
    workdir.mkdir()
    running = Servers(emulator, workdir)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, persisting every write (stopped afterwards).

    ``appendfsync always``, as a production Redis holding money-bearing state
    should: a SIGKILL (:meth:`RedisServer.stop`) then loses nothing, and the
    outage test can show what survives a restart. The driver's command line
    turns persistence off; a wrapper appends the two options, which Redis
    reads last and so wins.
    """
    binary = required_binary()
    directory = tmp_path / "redis"
    directory.mkdir()
    wrapper = directory / "redis-server-aof"
    wrapper.write_text(f'#!/bin/sh\nexec {binary} "$@" --appendonly yes --appendfsync always\n')
    wrapper.chmod(0o755)
    server = RedisServer(str(wrapper), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
