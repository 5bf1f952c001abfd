"""Scaffolding shared by the safety suites.

- :class:`Figures`: the counters every suite reports (printed at the end of the
  pytest run by ``conftest.pytest_terminal_summary``).
- :class:`AppLog` and the two recording apps: what the wrapped app ran for,
  with the idempotency key of the charge it was handed.
- :class:`SendLog` and the counting transports: every request the middleware
  sent to Small Transfers, with its ``Idempotency-Key`` (re-sends show up here
  even when the emulator's ledger cannot see them).
- :class:`WSGIDriver` (webtest, ``lint=True``) and :class:`ASGIDriver`
  (``httpx.ASGITransport``): one synchronous interface over both adapters, with
  full control of the Host, scheme, client address and Cookie header.
- :func:`sign_in`: the real sign-in flow against an emulator.
- :class:`UvicornThread` and :class:`WaitressThread`: real servers on a free
  loopback port, always stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import httpx
import webtest

from helpers import SetCookie  # one Set-Cookie parser for every suite
from st_middleware import SmallTransfersASGI, SmallTransfersWSGI
from st_middleware import testing as kit
from st_middleware._core import Core
from st_middleware.emulator.records import is_loopback_uri

SECRET = "safety-suite-session-secret-0123456789-abcdef"
NEW_SECRET = "safety-suite-rotated-secret-9876543210-zyxwvu"
SIGN_IN = "/smalltransfers/sign-in"
CALLBACK = "/smalltransfers/callback"
SIGN_OUT = "/smalltransfers/sign-out"
SESSION_NAMES = ("st_session", "__Host-st_session")
STATE_NAMES = ("st_state", "__Host-st_state")
PRICE = 3000
PRICING = {"/paid": PRICE, "/paid/*": PRICE, "/slow": PRICE}
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON_ACCEPT = "application/json"


# -- figures -------------------------------------------------------------------------


class Figures:
    """Counters per suite, reported once at the end of the run (thread-safe)."""

    ORDER = ("load", "faults", "hostile", "cookies", "proxies")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}
        self._notes: dict[str, list[str]] = {}

    def add(self, suite: str, counts: dict[str, int]) -> None:
        with self._lock:
            counter = self._counts.setdefault(suite, Counter())
            for name, value in counts.items():
                counter[name] += value

    def note(self, suite: str, text: str) -> None:
        with self._lock:
            self._notes.setdefault(suite, []).append(text)

    def line(self, suite: str) -> str | None:
        with self._lock:
            counter = self._counts.get(suite)
            if not counter:
                return None
            return f"SAFETY {suite}: " + ", ".join(f"{v} {k}" for k, v in counter.items())

    def lines(self) -> list[str]:
        suites = [s for s in self.ORDER if s in self._counts or s in self._notes]
        suites += sorted((set(self._counts) | set(self._notes)) - set(suites))
        out: list[str] = []
        for suite in suites:
            line = self.line(suite)
            if line:
                out.append(line)
            out.extend(f"SAFETY {suite} | {note}" for note in self._notes.get(suite, []))
        return out


FIGURES = Figures()


# -- the recording apps ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One request the wrapped app ran for."""

    path: str
    customer: str | None
    key: str | None
    amount: int | None


@dataclass
class AppLog:
    """Every run of the wrapped app (thread-safe), and the gate of ``/slow``."""

    runs: list[Run] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    slow_started: threading.Event = field(default_factory=threading.Event)

    def record(self, path: str, values: Any) -> Run:
        customer = values.get("smalltransfers.customer")
        charge = values.get("smalltransfers.charge")
        run = Run(
            path=path,
            customer=getattr(customer, "id", None),
            key=getattr(charge, "idempotency_key", None),
            amount=getattr(charge, "amount_micros", None),
        )
        with self.lock:
            self.runs.append(run)
        return run

    def snapshot(self) -> list[Run]:
        with self.lock:
            return list(self.runs)

    def clear(self) -> None:
        with self.lock:
            self.runs.clear()


def _answer(run: Run) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(asdict(run)).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-Customer", run.customer or "-"),
        ("X-Charge-Key", run.key or "-"),
        ("X-Charge-Amount", "-" if run.amount is None else str(run.amount)),
    ]
    return 200, headers, body


def recording_wsgi_app(log: AppLog) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if path == "/slow":
            log.slow_started.set()
            log.release.wait(10)
        status, headers, body = _answer(log.record(path, environ))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    return app


def recording_asgi_app(log: AppLog) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rpartition(".")[2]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        path = scope["path"]
        if path == "/slow":
            log.slow_started.set()
            deadline = time.monotonic() + 10
            while not log.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        status, headers, body = _answer(log.record(path, scope))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


# -- what the middleware sent to Small Transfers -------------------------------------------


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    key: str | None


class SendLog:
    """Every request the middleware handed to its transport (before the wire)."""

    SECRET_FIELDS = ("secretKey", "accessToken", "authorizationCode")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        #: Every secret value that went out in a body (for the log-hygiene checks).
        self.secrets: set[str] = set()

    def record(self, request: httpx.Request) -> None:
        try:
            body = json.loads(request.content)
        except ValueError:
            body = {}
        with self._lock:
            self._sent.append(
                Sent(request.method, request.url.path, request.headers.get("idempotency-key"))
            )
            if isinstance(body, dict):
                self.secrets.update(
                    v for k, v in body.items() if k in self.SECRET_FIELDS and isinstance(v, str)
                )

    def snapshot(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()

    def per_key(self) -> Counter[str]:
        return Counter(s.key for s in self.snapshot() if s.key is not None)

    def to(self, suffix: str) -> list[Sent]:
        return [s for s in self.snapshot() if s.path.endswith(suffix)]


_POOL = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=30)


class CountingTransport(httpx.HTTPTransport):
    def __init__(self, log: SendLog) -> None:
        super().__init__(limits=_POOL)
        self.log = log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.log.record(request)
        return super().handle_request(request)


class AsyncCountingTransport(httpx.AsyncBaseTransport):
    """Counts, then sends with a pool of the running loop's own (connections are per loop)."""

    def __init__(self, log: SendLog) -> None:
        self.log = log
        self._pools: dict[int, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.log.record(request)
        loop = id(asyncio.get_running_loop())
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = httpx.AsyncHTTPTransport(limits=_POOL)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pool = self._pools.pop(id(asyncio.get_running_loop()), None)
        if pool is not None:
            await pool.aclose()


def emulator_keywords(emu: Any, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "publishable_key": emu.publishable_key,
        "secret_key": emu.secret_key,
        "base_url": emu.url,
        "session_secret": SECRET,
        "pricing": PRICING,
    }
    options.update(overrides)
    return options


# -- responses and cookies ---------------------------------------------------------------


@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float = 0.0

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    @property
    def location(self) -> str | None:
        return self.header("Location")

    @property
    def cookies(self) -> list[SetCookie]:
        return [SetCookie.parse(v) for v in self.all("Set-Cookie")]

    def cookie(self, names: Iterable[str]) -> SetCookie | None:
        names = tuple(names)
        found = [c for c in self.cookies if c.name in names]
        return found[-1] if found else None

    @property
    def session(self) -> SetCookie | None:
        return self.cookie(SESSION_NAMES)

    @property
    def customer(self) -> str | None:
        value = self.header("X-Customer")
        return None if value in (None, "-") else value

    @property
    def charge_key(self) -> str | None:
        value = self.header("X-Charge-Key")
        return None if value in (None, "-") else value

    def json(self) -> Any:
        return json.loads(self.body)


def wire_query(text: str) -> str:
    """A query string as it travels: printable ASCII kept, everything else %-encoded."""
    return quote(text, safe="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%#"))


# -- drivers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request as a test asks for it; each driver turns it into WSGI or ASGI."""

    method: str
    path: str
    query: str
    cookie: str | None
    headers: dict[str, str]
    host: str
    scheme: str
    client: str
    accept: str


class Driver:
    """One wrapped app and a synchronous way to send it any request."""

    kind: str
    mw: Any

    def __init__(
        self,
        emu: Any,
        log: AppLog | None,
        options: dict[str, Any],
        wrap: Callable[..., Any],
        recording_app: Callable[[AppLog], Any],
        counting_transport: Callable[[SendLog], Any],
    ) -> None:
        """``mw``: ``wrap`` (the adapter) around ``recording_app``, pointed at ``emu``,
        sending through ``counting_transport`` unless ``options`` name a transport."""
        self.log = log or AppLog()
        self.sends = SendLog()
        self._pool = ThreadPoolExecutor(max_workers=4)
        options.setdefault("transport", counting_transport(self.sends))
        clock = options.pop("clock", None)
        self.mw = wrap(recording_app(self.log), **emulator_keywords(emu, **options))
        if clock is not None:
            # The core's clock comes through its constructor (no module patching).
            self.mw._core = Core(self.mw.settings, clock=clock)

    def request(
        self,
        method: str,
        path: str,
        query: str = "",
        *,
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
        host: str = "localhost",
        scheme: str = "http",
        client: str = "127.0.0.1",
        accept: str = JSON_ACCEPT,
    ) -> Resp:
        start = time.monotonic()
        resp = self._send(
            Req(method, path, query, cookie, headers or {}, host, scheme, client, accept)
        )
        resp.elapsed = time.monotonic() - start
        return resp

    def get(self, path: str, query: str = "", **kw: Any) -> Resp:
        return self.request("GET", path, query, **kw)

    def in_thread(self, method: str, path: str, query: str = "", **kw: Any) -> Future[Resp]:
        """The same request, sent from another thread (for overlapping requests)."""
        return self._pool.submit(self._threaded, method, path, query, kw)

    def _threaded(self, method: str, path: str, query: str, kw: dict[str, Any]) -> Resp:
        return self.request(method, path, query, **kw)

    def _send(self, req: Req) -> Resp:
        raise NotImplementedError

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class WSGIDriver(Driver):
    """``webtest.TestApp(mw, lint=True)``: the WSGI side checked by a validator."""

    kind = "wsgi"

    def __init__(self, emu: Any, log: AppLog | None = None, **options: Any) -> None:
        super().__init__(
            emu, log, options, SmallTransfersWSGI, recording_wsgi_app, CountingTransport
        )
        self.app = webtest.TestApp(self.mw, lint=True)
        self._lock = threading.Lock()

    def _send(self, req: Req) -> Resp:
        environ: dict[str, Any] = {
            "PATH_INFO": req.path,
            "QUERY_STRING": req.query,
            "HTTP_HOST": req.host,
            "HTTP_ACCEPT": req.accept,
            "REMOTE_ADDR": req.client,
            "wsgi.url_scheme": req.scheme,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "443" if req.scheme == "https" else "80",
        }
        if req.scheme == "https":
            environ["HTTPS"] = "on"
        if req.cookie is not None:
            environ["HTTP_COOKIE"] = req.cookie
        for name, value in req.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        res = self.app.request(
            "/", method=req.method, environ=environ, status="*", expect_errors=True
        )
        # The cookies are the test's business: webtest's own jar must stay empty.
        self.app.cookiejar.clear()
        return Resp(res.status_int, list(res.headerlist), res.body)

    def idle(self, seconds: float) -> None:
        """Wait: the capture worker is a thread of its own."""
        time.sleep(seconds)

    def close(self) -> None:
        super().close()
        self.mw.close()


class ASGIDriver(Driver):
    """``httpx.AsyncClient(transport=httpx.ASGITransport(mw))`` on a loop of its own."""

    kind = "asgi"

    def __init__(self, emu: Any, log: AppLog | None = None, **options: Any) -> None:
        super().__init__(
            emu, log, options, SmallTransfersASGI, recording_asgi_app, AsyncCountingTransport
        )
        self.loop = asyncio.new_event_loop()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._loop_lock = threading.Lock()

    def _client(self, address: str) -> httpx.AsyncClient:
        client = self._clients.get(address)
        if client is None:
            transport = httpx.ASGITransport(app=self.mw, client=(address, 50123))
            client = self._clients[address] = httpx.AsyncClient(transport=transport)
        return client

    @staticmethod
    def _build(client: httpx.AsyncClient, req: Req) -> httpx.Request:
        query = req.query.encode("ascii")
        url = httpx.URL(scheme=req.scheme, host="localhost", path=req.path, query=query)
        raw: list[tuple[str, bytes]] = [
            ("Host", req.host.encode("latin-1")),
            ("Accept", req.accept.encode("latin-1")),
        ]
        if req.cookie is not None:
            raw.append(("Cookie", req.cookie.encode("latin-1")))
        raw.extend((k, v.encode("latin-1")) for k, v in req.headers.items())
        return client.build_request(req.method, url, headers=raw)

    def _send(self, req: Req) -> Resp:
        if threading.current_thread() is not threading.main_thread():
            return asyncio.run(self._one_off(req))
        http = self._client(req.client)
        response = self.loop.run_until_complete(http.send(self._build(http, req)))
        return Resp(response.status_code, list(response.headers.multi_items()), response.content)

    def idle(self, seconds: float) -> None:
        """Let the loop run (the capture worker lives on it), as a server's loop does."""
        self.loop.run_until_complete(asyncio.sleep(seconds))

    async def _one_off(self, req: Req) -> Resp:
        transport = httpx.ASGITransport(app=self.mw, client=(req.client, 50124))
        async with httpx.AsyncClient(transport=transport) as http:
            response = await http.send(self._build(http, req))
        await self.mw.aclose()  # this loop's pooled client
        return Resp(response.status_code, list(response.headers.multi_items()), response.content)

    def close(self) -> None:
        super().close()
        for client in self._clients.values():
            self.loop.run_until_complete(client.aclose())
        self.loop.run_until_complete(self.mw.aclose())
        self.loop.close()


DRIVERS: dict[str, type[Driver]] = {"wsgi": WSGIDriver, "asgi": ASGIDriver}


def make_driver(kind: str, emu: Any, **options: Any) -> Driver:
    cls = DRIVERS[kind]
    return cls(emu, **options)  # type: ignore[call-arg]


# -- signing in ------------------------------------------------------------------------------


def start_sign_in(
    driver: Driver, *, next_path: str = "/", **where: Any
) -> tuple[str, str, SetCookie]:
    """The sign-in route: ``(redirect_uri, state, state cookie)``."""
    start = driver.get(SIGN_IN, urlencode({"next": next_path}), **where)
    assert start.status == 303, (start.status, start.body[:300])
    query = parse_qs(urlsplit(start.location or "").query)
    state_cookie = start.cookie(STATE_NAMES)
    assert state_cookie is not None
    assert not state_cookie.clears
    return query["redirect_uri"][0], query["state"][0], state_cookie


def sign_in(driver: Driver, emu: Any, customer: Any, **where: Any) -> SetCookie:
    """The real sign-in flow; returns the session cookie the callback set."""
    redirect_uri, state, state_cookie = start_sign_in(driver, **where)
    bound = redirect_uri if is_loopback_uri(redirect_uri) else None
    code = emu.issue_code(customer_id=customer.id, redirect_uri=bound)
    done = driver.get(
        urlsplit(redirect_uri).path,
        urlencode({"code": code, "state": state}),
        cookie=state_cookie.pair,
        **where,
    )
    assert done.status == 303, (done.status, done.body[:300])
    session = done.session
    assert session is not None
    assert not session.clears
    return session


def new_customer(emu: Any, limit_micros: int = 1_000_000) -> Any:
    return kit.new_customer(
        emu,
        limit_micros=limit_micros,
        first_name="Safety",
        last_name="Suite",
        email="safety@example.com",
    )


# -- what a browser makes of a Location --------------------------------------------------------


def browser_target(base: str, location: str) -> tuple[str, str]:
    """``(scheme, host)`` a WHATWG-style browser goes to for ``location`` on ``base``.

    Leading/trailing C0 and spaces stripped, tabs and newlines removed, and
    backslashes read as slashes (what browsers do for http(s) URLs).
    """
    cleaned = location.strip("".join(chr(c) for c in range(0x21)))
    cleaned = cleaned.replace("\t", "").replace("\n", "").replace("\r", "")
    cleaned = cleaned.replace("\\", "/")
    parts = urlsplit(urljoin(base, cleaned))
    return parts.scheme, parts.netloc.lower()


# -- real servers on loopback -----------------------------------------------------------------


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class UvicornThread:
    """uvicorn (h11, asyncio) serving ``app`` on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._sock = _free_socket()
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            loop="asyncio",
            http="h11",
            backlog=1024,
            timeout_graceful_shutdown=10,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.__exit__(None, None, None)
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(20)
        self._sock.close()
        assert not self._thread.is_alive(), "uvicorn did not stop"


class ThreadedWSGIThread:
    """The standard library's threaded WSGI server (a thread per connection) on 127.0.0.1.

    Used by the load test: waitress serving in the same process as the load
    generator and the emulator showed erratic 5-20x slowdowns at 8+ concurrent
    connections even around a bare app (its poll loop and the client share one
    GIL), which made the ledger check a test of waitress, not of the middleware.
    """

    def __init__(self, app: Any) -> None:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            request_queue_size = 1024

        class Handler(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = make_server("127.0.0.1", 0, app, server_class=Server, handler_class=Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> ThreadedWSGIThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(20)
        assert not self._thread.is_alive(), "the WSGI server did not stop"


class WaitressThread:
    """waitress (several worker threads) serving ``app`` on 127.0.0.1 in a thread."""

    def __init__(self, app: Any, threads: int = 8, **adjustments: Any) -> None:
        from waitress.server import create_server

        options: dict[str, Any] = {
            "threads": threads,
            "connection_limit": 1024,
            "backlog": 1024,
            "channel_timeout": 30,
            "asyncore_loop_timeout": 0.2,
            **adjustments,
        }
        self.server: Any = create_server(app, host="127.0.0.1", port=0, **options)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # Closing the channels from another thread can race the poll loop.
        with contextlib.suppress(OSError):
            self.server.run()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.effective_port}"

    def __enter__(self) -> WaitressThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        server = self.server
        # Let the workers finish what they are doing (they pull the trigger when
        # done), then close every channel, the listening socket and the trigger
        # included, as webtest's StopableWSGIServer does; the poll loop then ends.
        server.task_dispatcher.shutdown(timeout=10)
        deadline = time.monotonic() + 10
        while server._map and time.monotonic() < deadline:
            for channel in list(server._map.values()):
                channel.handle_close()
        self._thread.join(20)
        assert not self._thread.is_alive(), "waitress did not stop"


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (a generous bound, never a timing assert)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
