"""A throwaway redis-server for the store tests: 127.0.0.1, a free port, no persistence.

``RedisServer`` starts Debian's ``redis-server`` in a temporary directory,
waits until it answers PING, and can be stopped (SIGKILL, as a crash) and
started again on the same port, for the outage tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "redis_server_binary", "required_binary"]


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None when it is not installed."""
    return shutil.which("redis-server")


def required_binary() -> str:
    """``redis-server``'s path for a test; skip it (fail under ST_REQUIRE_REDIS=1) if missing.

    The redis package must be importable too: without it no store can talk to the server.
    """
    import pytest  # here, not at the top: the benchmark loads this module without pytest

    binary = redis_server_binary()
    missing = None
    if binary is None:
        missing = "redis-server is not installed (run: bash scripts/install-redis)"
    else:
        try:
            import redis  # noqa: F401
        except ImportError:
            missing = 'the redis package is not installed (pip install "st-middleware[redis]")'
    if missing is not None or binary is None:
        if os.environ.get("ST_REQUIRE_REDIS") == "1":
            pytest.fail(f"ST_REQUIRE_REDIS=1 but {missing}")
        pytest.skip(str(missing))
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pings(port: int) -> bool:
    """True if a server on ``port`` answers PING (raw RESP: no client library involved)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; ``url`` stays the same across stop/start."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--daemonize", "no",
                "--protected-mode", "yes",
                "--loglevel", "warning",
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _pings(self.port):
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited ({self.process.returncode}): {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server at once (SIGKILL: what a crash or a lost host looks like)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None
