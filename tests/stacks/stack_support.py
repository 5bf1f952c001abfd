"""Real servers for tests/stacks: how each starts on 127.0.0.1, how it is always stopped.

Modelled on ``tests/examples/example_support.py`` and ``tests/field/field_stacks.py``
(copied bits, not imports: those modules pull in fixtures and apps of their
own). Every server listens on port 0 and announces the port it got in its
log, which is read back (no race for a free port); it runs in a session of
its own, so stopping it (SIGTERM, then SIGKILL to the whole group) leaves no
worker behind, whatever happened in the test.

The apps the servers run are modules in this folder (``stack_*_app.py``) or
in ``examples/``; they read their Small Transfers keys from ``SMALL_TRANSFERS_*``
and any extra middleware keywords, as JSON, from ``STACK_ST_OPTIONS``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from st_middleware.emulator import ChargeRecord, Customer, Emulator
from st_middleware.testing import TEST_SESSION_SECRET, ledger

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
#: What each server prints once it listens (daphne names the address its own way).
_LISTENING = re.compile(
    rb"(?:Uvicorn running on|Serving on|Listening at:|Running on) http://127\.0\.0\.1:(\d+)"
    rb"|Listening on TCP address 127\.0\.0\.1:(\d+)"
)
#: Generous: two cores, several servers importing FastAPI side by side.
START_TIMEOUT = 60.0
T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None], timeout: float = 10.0, what: str = "the condition"
) -> T:
    """Poll ``check`` until it returns something other than None/False; its value.

    A readiness poll instead of a sleep: it returns as soon as the thing is
    there, and the timeout only bounds a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# -- commands ---------------------------------------------------------------------------


def uvicorn(app: str, *flags: str) -> list[str]:
    return [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "0", *flags, app]


def hypercorn(app: str, *flags: str) -> list[str]:
    return [str(BIN / "hypercorn"), "--bind", "127.0.0.1:0", *flags, app]


def daphne(app: str, *flags: str) -> list[str]:
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "0", *flags, app]


def waitress(app: str, *flags: str) -> list[str]:
    return [str(BIN / "waitress-serve"), "--listen=127.0.0.1:0", *flags, app]


def gunicorn(app: str, *flags: str) -> list[str]:
    """One sync worker unless ``flags`` say otherwise (the tests trace *the* worker)."""
    from gunicorn.config import KNOWN_SETTINGS

    quiet = any("--no-control-socket" in (setting.cli or []) for setting in KNOWN_SETTINGS)
    command = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "--workers", "1"]
    # Else gunicorn opens a control socket under ~/.gunicorn/.
    return [*command, *(["--no-control-socket"] if quiet else []), *flags, app]


def documented_command(example: str) -> list[str]:
    """The one server command ``example``'s docstring documents, moved to port 0.

    Its ``SMALL_TRANSFERS_*`` settings are replaced by the test's (the emulator
    of the test, a fixed session secret): only the server part is taken.
    """
    doc = ast.get_docstring(ast.parse((ROOT / example).read_text())) or ""
    lines = [line.strip() for line in doc.splitlines() if " .venv/bin/" in line and "=" in line]
    assert len(lines) == 1, f"{example} documents {len(lines)} commands"
    words = shlex.split(lines[0][lines[0].rindex(" .venv/bin/") + 1 :])
    words = [word.replace("8000", "0") for word in words]  # the port: let the server pick
    return [str(BIN / Path(words[0]).name), *words[1:]]


# -- servers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What to start: a command, extra environment, middleware keywords, a ready path."""

    name: str
    command: list[str]
    options: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    #: A free path that answers 200 once the app itself is loaded (gunicorn
    #: announces its port before its worker has imported the app).
    ready: str = "/health"


@dataclass
class Served:
    """A started server: its process, its log, and its port once it listens."""

    spec: Spec
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.origin, timeout=30, **options)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_ready(self, deadline: float) -> None:
        while not self.port:
            found = _LISTENING.search(self.log.read_bytes())
            if found:
                self.port = int(found.group(1) or found.group(2))
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.spec.name} did not start:\n{self.tail()}")
            else:
                time.sleep(0.02)
        while True:
            with suppress(httpx.TransportError):
                if httpx.get(self.origin + self.spec.ready, timeout=5).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.spec.name} never answered:\n{self.tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL to the whole session (workers included)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def server_env(emulator: Emulator, spec: Spec) -> dict[str, str]:
    """The environment of a server: our folder and the repository importable, the emulator."""
    path = [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, path)),
        "PYTHONUNBUFFERED": "1",
        "SMALL_TRANSFERS_BASE_URL": emulator.url,
        "SMALL_TRANSFERS_PUBLISHABLE_KEY": emulator.publishable_key,
        "SMALL_TRANSFERS_SECRET_KEY": emulator.secret_key,
        "SMALL_TRANSFERS_SESSION_SECRET": TEST_SESSION_SECRET,
        "STACK_ST_OPTIONS": json.dumps(dict(spec.options)),
        **spec.env,
    }


class Servers:
    """Every server of a test module: started side by side, every one stopped by close()."""

    def __init__(self, emulator: Emulator, workdir: Path) -> None:
        self.emulator, self.workdir = emulator, workdir
        self._running: list[Served] = []

    def start(self, *specs: Spec) -> list[Served]:
        """Start ``specs`` at once (their imports overlap), then wait until each answers."""
        started = [self._launch(spec) for spec in specs]
        deadline = time.monotonic() + START_TIMEOUT
        for served in started:
            served.wait_ready(deadline)
        return started

    def _launch(self, spec: Spec) -> Served:
        slug = re.sub(r"[^a-z0-9]+", "-", spec.name.lower()).strip("-")
        log = self.workdir / f"{slug}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                spec.command,
                cwd=ROOT,
                env=server_env(self.emulator, spec),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        served = Served(spec, process, log)
        self._running.append(served)  # registered before waiting: stopped even if it fails
        return served

    def close(self) -> None:
        running, self._running = self._running, []
        for served in running:  # SIGTERM every one first: they shut down side by side
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGTERM)
        for served in running:
            served.stop()


class StripPrefix(httpx.BaseTransport):
    """A reverse proxy that forwards ``/api/...`` as ``/...`` (in front of ``--root-path``).

    Copied from tests/examples/example_support.py.
    """

    def __init__(self, prefix: str, inner: httpx.BaseTransport | None = None) -> None:
        self.prefix, self.inner = prefix, inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == self.prefix or path.startswith(self.prefix + "/"):
            request.url = request.url.copy_with(path=path[len(self.prefix) :] or "/")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


# -- the ledger ---------------------------------------------------------------------------


def rows(emulator: Emulator, customer: Customer) -> list[tuple[str, str, int]]:
    """``(kind, state, captured_micros)`` of each ledger row of ``customer``, oldest first."""
    return [(row.kind, row.state, row.captured_micros) for row in ledger(emulator, customer)]


def captured_row(emulator: Emulator, customer: Customer, timeout: float = 10.0) -> ChargeRecord:
    """The customer's one ledger row once it is captured (captures follow the response)."""

    def settled() -> ChargeRecord | None:
        found = ledger(emulator, customer)
        return found[0] if len(found) == 1 and found[0].state == "captured" else None

    return wait_for(settled, timeout, f"a captured charge (ledger: {rows(emulator, customer)})")


def session_cookie(client: httpx.Client, name: str = "st_session") -> str:
    """The session cookie a signed-in client holds, as a ``Cookie`` header value."""
    value = client.cookies.get(name)
    assert value, f"no {name} cookie in {list(client.cookies.keys())}"
    return f"{name}={value}"
