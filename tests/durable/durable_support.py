"""Real servers, a real Redis and the emulator's ledger for the durable tests.

Modelled on ``tests/stacks/stack_support.py`` (copied bits, not imports: that
folder is not on ``sys.path`` when this one runs alone). Every server listens
on 127.0.0.1 port 0 and announces the port it got in its log, which is read
back (no race for a free port). Each runs in a session of its own, so
:meth:`Served.kill` (SIGKILL to the whole process group: the crash under
test) and :meth:`Servers.close` (always, also on failure) leave no worker
behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from st_middleware.emulator import ChargeRecord, Customer, Emulator
from st_middleware.testing import emulator_env, ledger, sign_in

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
JSON = "application/json"
CAPTURES = "/api/v1/charges/"  # a prefix that matches captures only (authorizations: /charges)
_LISTENING = re.compile(rb"(?:Uvicorn running on|Listening at:) http://127\.0\.0\.1:(\d+)")
#: Two cores, several servers importing side by side: generous.
START_TIMEOUT = 60.0
T = TypeVar("T")

Kind = Literal["gunicorn", "gunicorn-gthread", "uvicorn"]


def wait_for(
    check: Callable[[], T | None], timeout: float = 10.0, what: str = "the condition"
) -> T:
    """Poll ``check`` until it returns something other than None/False; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# -- servers ------------------------------------------------------------------------------


def command(kind: Kind) -> list[str]:
    """The command line of one server of ``kind`` serving ``durable_app``."""
    if kind == "uvicorn":
        uvicorn = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "0"]
        return [*uvicorn, "--no-access-log", "durable_app:asgi"]
    from gunicorn.config import KNOWN_SETTINGS

    quiet = any("--no-control-socket" in (setting.cli or []) for setting in KNOWN_SETTINGS)
    gunicorn = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0"]
    if quiet:
        gunicorn.append("--no-control-socket")  # else it opens a socket under ~/.gunicorn/
    if kind == "gunicorn-gthread":
        # Two processes of 32 threads: the outbox is shared across processes and threads.
        gunicorn += ["--workers", "2", "--worker-class", "gthread", "--threads", "32"]
    else:
        gunicorn += ["--workers", "1"]
    return [*gunicorn, "durable_app:wsgi"]


@dataclass
class Served:
    """A started server: its process, its log, its port once it listens."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    #: When the server first answered (its first request: the capture worker starts then).
    ready_at: float = 0.0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.origin, timeout=30, **options)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return self.text()[-4000:]

    def wait_ready(self, deadline: float) -> None:
        while not self.port:
            found = _LISTENING.search(self.log.read_bytes())
            if found:
                self.port = int(found.group(1))
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{self.tail()}")
            else:
                time.sleep(0.02)
        # The "listening" line comes before the worker has imported the app:
        # poll a page that goes through the middleware until it answers.
        while True:
            with suppress(httpx.TransportError):
                if httpx.get(self.origin + "/health", timeout=5).status_code == 200:
                    self.ready_at = time.monotonic()
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never answered:\n{self.tail()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL to the whole process group at once: a crash, no shutdown code runs."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL to the whole group (workers included)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        self.kill()


class Servers:
    """The servers of one test; :meth:`close` stops every one, whatever happened."""

    def __init__(self, emulator: Emulator, workdir: Path) -> None:
        self.emulator, self.workdir = emulator, workdir
        self._running: list[Served] = []

    def start(self, kind: Kind, store: str, name: str | None = None, **options: Any) -> Served:
        """Start one server of ``kind`` on ``store`` with these middleware keywords."""
        (served,) = self.start_many((kind, store, name, options))
        return served

    def start_many(self, *specs: tuple[Kind, str, str | None, dict[str, Any]]) -> list[Served]:
        """Start several at once (their imports overlap), then wait until each answers."""
        started = [self._launch(*spec) for spec in specs]
        deadline = time.monotonic() + START_TIMEOUT
        for served in started:
            served.wait_ready(deadline)
        return started

    def _launch(self, kind: Kind, store: str, name: str | None, options: dict[str, Any]) -> Served:
        name = name or f"{kind}-{len(self._running) + 1}"
        log = self.workdir / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            **emulator_env(self.emulator),
            "SMALL_TRANSFERS_STORE": store,
            "DURABLE_OPTIONS": json.dumps(options),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                command(kind),
                cwd=HERE,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        served = Served(name, process, log)
        self._running.append(served)  # registered before waiting: stopped even if it fails
        return served

    def close(self) -> None:
        running, self._running = self._running, []
        for served in running:  # SIGTERM every one first: they shut down side by side
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGTERM)
        for served in running:
            served.stop()


# -- visitors -----------------------------------------------------------------------------


def signed_in_cookie(served: Served, emulator: Emulator, customer: Customer) -> str:
    """Sign ``customer`` in on ``served`` (the kit's real round trip); the cookie header."""
    with served.client() as client:
        sign_in(client, emulator, customer)
        value = client.cookies.get("st_session")
    assert value, "the sign-in set no st_session cookie"
    return f"st_session={value}"


def get(served: Served, path: str, cookie: str = "", **params: Any) -> httpx.Response:
    """One GET with an API client's ``Accept`` and an explicit ``Cookie`` (no jar)."""
    headers = {"Accept": JSON}
    if cookie:
        headers["Cookie"] = cookie
    return httpx.get(served.origin + path, params=params, headers=headers, timeout=30)


def clears_session(response: httpx.Response) -> bool:
    """Whether ``response`` clears the session cookie (``st_session=``, expired)."""
    for value in response.headers.get_list("set-cookie"):
        if value.startswith("st_session=") and (
            value.startswith("st_session=;") or "max-age=0" in value.lower()
        ):
            return True
    return False


# -- the ledger ---------------------------------------------------------------------------


def rows(emulator: Emulator, customer: Customer) -> list[tuple[str, str, int]]:
    """``(charge id, state, captured micros)`` of each of ``customer``'s ledger rows."""
    return [(row.id, row.state, row.captured_micros) for row in ledger(emulator, customer)]


def captured(emulator: Emulator, charge_id: str) -> ChargeRecord | None:
    """The ledger row of ``charge_id`` once it is captured, else None."""
    for row in ledger(emulator):
        if row.id == charge_id and row.state == "captured":
            return row
    return None


@dataclass
class CaptureCalls:
    """Every capture the emulator's ledger processed, by charge id and outcome.

    Wraps the emulator store's ``capture``: a capture that went through
    counts as ``"captured"``, a refused one under its error code (a second
    capture of one charge is ``charge_already_captured``). "Captured exactly
    once" is then one ``captured`` per charge, whatever the retries were.
    """

    emulator: Emulator
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The access tokens handed out at sign-in (what must never be printed).
    tokens: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        store = self.emulator.store
        original = store.capture

        def capture(*args: Any) -> Any:
            # (publishable key, secret key, access token, charge id, micros)
            charge_id = str(args[3])
            try:
                record = original(*args)
            except Exception as exc:
                self._count(charge_id, str(getattr(exc, "code", type(exc).__name__)))
                raise
            self._count(charge_id, "captured")
            return record

        store.capture = capture  # type: ignore[method-assign,assignment]
        exchange = store.exchange_code

        def exchange_code(*args: Any) -> Any:
            token, scope, customer = exchange(*args)
            with self._lock:
                self.tokens.add(token)
            return token, scope, customer

        store.exchange_code = exchange_code  # type: ignore[method-assign,assignment]

    def _count(self, charge_id: str, outcome: str) -> None:
        with self._lock:
            self.seen[(charge_id, outcome)] += 1

    def of(self, charge_id: str) -> dict[str, int]:
        with self._lock:
            return {outcome: n for (cid, outcome), n in self.seen.items() if cid == charge_id}

    def total(self, outcome: str) -> int:
        with self._lock:
            return sum(n for (_, seen), n in self.seen.items() if seen == outcome)


def log_lines(served: Served, needle: str) -> list[str]:
    return [line for line in served.text().splitlines() if needle in line]


@dataclass
class Timeline:
    """What a loop of requests saw, with when each one started and ended (monotonic)."""

    entries: list[tuple[float, float, Any]] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[float, float, Any]]:
        return iter(list(self.entries))
