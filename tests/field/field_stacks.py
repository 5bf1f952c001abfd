"""Real servers for the matrix: which stacks, how each starts and stops, raw HTTP to them.

Modelled on ``tests/examples/example_support.py``: every server listens on
127.0.0.1 port 0 and announces the port it got in its log, which the test
reads back (no race for a free port); it runs in a session of its own so
that stopping it (SIGTERM, then SIGKILL to the whole group) leaves no worker
behind, whatever happened in the test.

Requests go over raw sockets: the request line is written byte for byte, so
no client library normalises ``//paid``, ``/./paid`` or a lowercase method
before the server sees it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from field_apps import CELL_HEADER, Ran, parse_ran

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent

_LISTENING = re.compile(
    rb"(?:Uvicorn running on|Serving on|Listening at:|Running on) http://127\.0\.0\.1:(\d+)"
)


@dataclass(frozen=True)
class Stack:
    """A framework app under one server; ``prefix`` is where the app is mounted."""

    name: str
    server: str
    app: str
    prefix: str = ""

    def command(self) -> list[str]:
        if self.server == "gunicorn":
            # Two sync workers: the side channel must work across processes.
            command = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "--workers", "2"]
            command += ["--worker-class", "sync", *_gunicorn_quiet(), self.app]
            return command
        if self.server == "waitress":
            return [str(BIN / "waitress-serve"), "--listen=127.0.0.1:0", self.app]
        if self.server == "werkzeug":
            return [sys.executable, str(HERE / "field_serve.py"), self.app]
        if self.server == "uvicorn":
            return [
                *(str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "0"),
                *("--no-access-log", self.app),
            ]
        if self.server == "hypercorn":
            return [str(BIN / "hypercorn"), "--bind", "127.0.0.1:0", self.app]
        raise ValueError(f"unknown server {self.server}")


def _gunicorn_quiet() -> list[str]:
    """``--no-control-socket`` where gunicorn has one (else it opens ~/.gunicorn/...)."""
    from gunicorn.config import KNOWN_SETTINGS

    has_it = any("--no-control-socket" in (setting.cli or []) for setting in KNOWN_SETTINGS)
    return ["--no-control-socket"] if has_it else []


STACKS: tuple[Stack, ...] = (
    Stack("flask/gunicorn", "gunicorn", "field_flask:app"),
    Stack("flask/waitress", "waitress", "field_flask:app"),
    Stack("flask/werkzeug", "werkzeug", "field_flask:app"),
    Stack("flask@/shop/gunicorn", "gunicorn", "field_flask:dispatched", prefix="/shop"),
    Stack("django-wsgi/gunicorn", "gunicorn", "field_django:wsgi"),
    Stack("django-asgi/uvicorn", "uvicorn", "field_django:asgi"),
    Stack("starlette/uvicorn", "uvicorn", "field_starlette:app"),
    Stack("starlette/hypercorn", "hypercorn", "field_starlette:app"),
    Stack("fastapi/uvicorn", "uvicorn", "field_fastapi:app"),
    Stack("fastapi/hypercorn", "hypercorn", "field_fastapi:app"),
)


# -- raw HTTP ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What came back on the socket; ``status`` is None when no status line did."""

    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error: str = ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    @property
    def shown(self) -> str:
        """The status for a table: ``401``, or what went wrong instead."""
        return str(self.status) if self.status is not None else f"({self.error})"


def send_raw(
    port: int,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection, ``Connection: close``, read to the end."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method.upper() == "POST":
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    data = b""
    error = ""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        try:
            conn.sendall(request)
            while chunk := conn.recv(65536):
                data += chunk
        except TimeoutError:
            error = "timeout"
        except ConnectionResetError:
            error = "reset"  # some servers slam the door on what they refuse
    return _parse(data, error)


def _parse(data: bytes, error: str) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    found = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not found:
        return Reply(None, (), data, error or ("closed, no answer" if not data else "garbled"))
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    )
    return Reply(int(found.group(1)), headers, body, error)


# -- one running server -------------------------------------------------------------------


@dataclass
class Running:
    """A started server: its port once ready, its logs, and where its handlers write."""

    stack: Stack
    wrapped: bool
    process: subprocess.Popen[bytes]
    log: Path
    ran_log: Path
    port: int = 0
    _offset: int = field(default=0, repr=False)
    _cells: int = field(default=0, repr=False)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, deadline: float) -> None:
        """Read the port from the log, then poll a free page until the app itself answers.

        The "listening" line comes from the server before its workers have
        imported the app; the poll makes sure a broken import fails here,
        with the log, instead of as 500 cells later on.
        """
        while not self.port:
            found = _LISTENING.search(self.log.read_bytes())
            if found:
                self.port = int(found.group(1))
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.stack.name} did not start:\n{self.tail()}")
            else:
                time.sleep(0.05)
        free = self.stack.prefix + "/free"
        while True:
            with suppress(OSError):
                if send_raw(self.port, "GET", free, timeout=5).status == 200:
                    self.take_ran()  # the poll's own RAN lines are no cell's
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.stack.name} never answered {free}:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def next_cell(self, tag: str) -> str:
        self._cells += 1
        return f"{tag}{self._cells}"

    def take_ran(self) -> list[Ran]:
        """The RAN lines written since the last call (whole lines only)."""
        with self.ran_log.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [parse_ran(line) for line in complete.decode("utf-8").splitlines()]

    def request(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], cell: str
    ) -> tuple[Reply, list[Ran]]:
        """Send one cell's request; its reply, and every RAN line written meanwhile."""
        self.take_ran()
        sent = [*headers, (CELL_HEADER, cell)]
        try:
            reply = send_raw(self.port, method, target.format(origin=self.origin), sent)
        except OSError as exc:
            reply = Reply(None, (), b"", f"{type(exc).__name__}")
        return reply, self.take_ran()


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL to the whole session (workers included)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    # Whether it went quietly or not, nothing of its process group may outlive it.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class Fleet:
    """Every server of the test module: started on demand, all stopped by :meth:`close`."""

    def __init__(self, options: dict[str, Any], workdir: Path) -> None:
        self.options, self.workdir = options, workdir
        self._running: dict[tuple[str, bool], Running] = {}
        self._failed: dict[tuple[str, bool], str] = {}

    def start(self, stacks: Iterable[Stack], *, wrapped: bool = True) -> None:
        """Start ``stacks`` all at once (imports overlap), then wait for each to be ready."""
        known = self._running.keys() | self._failed.keys()
        fresh = [stack for stack in stacks if (stack.name, wrapped) not in known]
        for stack in fresh:
            try:
                self._running[stack.name, wrapped] = self._launch(stack, wrapped)
            except OSError as exc:  # e.g. a server that is not installed
                self._failed[stack.name, wrapped] = f"{stack.name} could not start: {exc}"
        deadline = time.monotonic() + 90
        for stack in fresh:
            running = self._running.get((stack.name, wrapped))
            if running is None:
                continue
            try:
                running.wait_ready(deadline)
            except AssertionError as exc:
                self._failed[stack.name, wrapped] = str(exc)
                del self._running[stack.name, wrapped]
                _stop(running.process)

    def get(self, stack: Stack, *, wrapped: bool = True) -> Running:
        """The running server of ``stack`` (started now if need be); AssertionError if dead."""
        self.start([stack], wrapped=wrapped)
        if (stack.name, wrapped) in self._failed:
            raise AssertionError(self._failed[stack.name, wrapped])
        return self._running[stack.name, wrapped]

    def _launch(self, stack: Stack, wrapped: bool) -> Running:
        slug = re.sub(r"[^a-z0-9]+", "-", stack.name) + ("" if wrapped else "-bare")
        log, ran_log = self.workdir / f"{slug}.log", self.workdir / f"{slug}.ran"
        ran_log.touch()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "FIELD_RAN_LOG": str(ran_log),
            "FIELD_WRAP": "1" if wrapped else "0",
            "FIELD_ST_OPTIONS": json.dumps(self.options),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                stack.command(),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return Running(stack, wrapped, process, log, ran_log)

    def close(self) -> None:
        running = list(self._running.values())
        self._running.clear()
        for server in running:  # SIGTERM every one first: they shut down side by side
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in running:
            _stop(server.process)
