"""HTTP plumbing and the `Emulator` class: a local Small Transfers on a background thread.

`http.server.ThreadingHTTPServer` with HTTP/1.1 keep-alive, one daemon thread per
connection and a deep accept queue (hundreds of concurrent clients). Handlers in
`api.py`, `pages.py` and `admin.py` return complete responses; this module writes them
(always with Content-Length) and carries out the faults that need the socket. Requests
whose Host header does not name the emulator are refused first (`guards.HostCheck`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .admin import handle_admin
from .api import MAX_BODY_BYTES, handle_api
from .faults import DropWhen, FaultPlan, Faults, huge_response, malformed_response, trickle
from .guards import HostCheck
from .messages import ApiError, Request, Response, json_response, problem_response
from .pages import SCOPES, Site, handle_page
from .records import ChargeRecord, Customer, Merchant
from .store import DEFAULT_LIMIT_MICROS, Store

DEFAULT_PUBLISHABLE_KEY = "pk_test_emulator"
DEFAULT_SECRET_KEY = "sk_test_emulator"  # noqa: S105 -- the emulator's own, public test key
DEFAULT_MERCHANT_NAME = "Test merchant"
ENDLESS_CONTENT_LENGTH = 1 << 40  # announced, never delivered


class Emulator:
    """A faithful local Small Transfers: the `/api/v1` JSON API, the sign-in page, a dashboard.

    Use as a context manager (``with Emulator(port=0) as emu: ...``) or call `start()` and
    `stop()`. The database (in memory unless `db` names a file) is created at
    construction, so customers can be set up before `start()`, and is closed by `stop()`.
    `authorization_ttl` is how long an authorized charge holds funds before it lapses,
    `code_ttl` how long an authorization code stays exchangeable (seconds).
    `merchant_name` is what the sign-in page and the dashboard call the merchant.

    Against DNS rebinding, requests must name the emulator in their Host header: its
    `host`, ``localhost``, ``127.0.0.1`` or ``[::1]``, with its port (any IP address when
    `host` is ``0.0.0.0`` or ``::``). `allowed_hosts` adds names, each with an optional
    ``:PORT`` (without one, any port), e.g. ``["emulator.lan", "localhost:9000"]``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str | os.PathLike[str] | None = None,
        publishable_key: str = DEFAULT_PUBLISHABLE_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        redirect_uris: Iterable[str] = (),
        admin: bool = False,
        authorization_ttl: float = 900.0,
        code_ttl: float = 600.0,
        verbose: bool = False,
        allowed_hosts: Iterable[str] = (),
        merchant_name: str = DEFAULT_MERCHANT_NAME,
    ) -> None:
        self.host = host
        self._host_check = HostCheck(host, allowed_hosts)  # ValueError on a malformed name
        # Display names, kept here rather than in the database: like the keys, they are
        # given anew each run. Merchants without one are shown by their publishable key.
        self.merchant_names: dict[str, str] = {publishable_key: merchant_name}
        self._site = Site(
            # Signs the HTML forms' CSRF tokens; new each run, so old pages need a reload.
            form_secret=secrets.token_bytes(32),
            merchant_names=self.merchant_names,
            log=self._note,
        )
        self.publishable_key = publishable_key
        self.secret_key = secret_key
        self.admin = admin
        self.verbose = verbose
        self.faults = Faults()
        self.store = Store(
            os.fspath(db) if db is not None else ":memory:",
            authorization_ttl=authorization_ttl,
            code_ttl=code_ttl,
        )
        # Upsert: a persisted database keeps its customers; the keys given now win.
        self.store.put_merchant(publishable_key, secret_key, tuple(redirect_uris))
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self._server else "not started"
        return f"<Emulator {self.host}:{self.port} {state}>"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the port and serve on a background thread; returns self."""
        if self._server is not None or self._stopped:
            raise RuntimeError("an Emulator starts once; create a new one")
        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how fast stop() is noticed
            name=f"st-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections, join the threads, close the database.

        Idempotent.
        """
        if self._stopped:
            return
        self._stopped = True
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()  # joins the connection threads
        if self._thread is not None:
            self._thread.join()
        self.store.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on (the real one once started with port 0)."""
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        """The base URL to give a middleware, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- test set-up -------------------------------------------------------------------

    def add_merchant(
        self,
        publishable_key: str,
        secret_key: str,
        redirect_uris: Iterable[str] = (),
        active: bool = True,
        name: str | None = None,
    ) -> Merchant:
        """Create (or replace) a merchant. No redirect URIs: any loopback URI is accepted.

        `name` is shown to customers; without one, its publishable key is.
        """
        merchant = self.store.put_merchant(
            publishable_key, secret_key, tuple(redirect_uris), active
        )
        if name:
            self.merchant_names[publishable_key] = name
        return merchant

    def create_customer(
        self,
        first_name: str = "Test",
        last_name: str = "Customer",
        email: str = "test@example.com",
        limit_micros: int = DEFAULT_LIMIT_MICROS,
        blocked: bool = False,
    ) -> Customer:
        """A new test customer; `blocked` customers get `charges_blocked` (402)."""
        return self.store.create_customer(first_name, last_name, email, limit_micros, blocked)

    def customers(self) -> list[Customer]:
        """All customers, oldest first."""
        return self.store.customers()

    def update_customer(
        self, customer_id: str, *, limit_micros: int | None = None, blocked: bool | None = None
    ) -> Customer:
        """Change a customer's spending limit or blocked flag."""
        return self.store.update_customer(customer_id, limit_micros=limit_micros, blocked=blocked)

    def issue_code(
        self,
        customer_id: str,
        redirect_uri: str | None = None,
        publishable_key: str | None = None,
        scope: str = "add-charge",
    ) -> str:
        """An authorization code, as pressing Allow on the sign-in page gives.

        `publishable_key` defaults to this emulator's merchant; a given `redirect_uri`
        must be one the merchant accepts (ValueError otherwise).
        """
        merchant = self._merchant(publishable_key)
        self._customer(customer_id)
        if redirect_uri is not None and not merchant.accepts_redirect_uri(redirect_uri):
            raise ValueError(f"redirect URI not registered for {merchant.publishable_key}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {sorted(SCOPES)}")
        return self.store.issue_code(merchant.publishable_key, customer_id, redirect_uri, scope)

    def issue_token(
        self, customer_id: str, publishable_key: str | None = None, scope: str = "add-charge"
    ) -> str:
        """An access token without the sign-in round trip (for tests that start signed in)."""
        merchant = self._merchant(publishable_key)
        self._customer(customer_id)
        return self.store.issue_token(merchant.publishable_key, customer_id, scope)

    def revoke(self, customer_id: str, merchant: str | None = None) -> int:
        """Revoke the customer's grants (to one merchant, or all); returns tokens revoked."""
        return self.store.revoke(customer_id, merchant)

    def ledger(self, customer_id: str | None = None) -> list[ChargeRecord]:
        """Every ledger row in the order written (lapsed authorizations marked)."""
        return self.store.ledger(customer_id)

    def spent(self, customer_id: str) -> int:
        """Micros currently counted against the customer's spending limit."""
        return self.store.spent(customer_id)

    def set_faults(
        self,
        *,
        latency: float = 0.0,
        error: str | None = None,
        drop: DropWhen | None = None,
        malformed: bool = False,
        huge_body: bool = False,
        endless_body: bool = False,
        count: int | None = None,
        path: str = "/api/v1/",
    ) -> FaultPlan:
        """Inject faults into the next `count` API requests (all, until cleared, if None).

        See `st_middleware.emulator.faults` for what each kind does. Replaces any
        earlier plan; raises ValueError on an impossible one.
        """
        plan = FaultPlan(latency, error, drop, malformed, huge_body, endless_body, count, path)
        self.faults.set(plan)
        return plan

    def clear_faults(self) -> None:
        """Stop injecting faults."""
        self.faults.clear()

    def _merchant(self, publishable_key: str | None) -> Merchant:
        merchant = self.store.merchant(publishable_key or self.publishable_key)
        if merchant is None:
            raise ValueError(f"unknown publishable key {publishable_key!r}")
        return merchant

    def _customer(self, customer_id: str) -> Customer:
        customer = self.store.customer(customer_id)
        if customer is None:
            raise ValueError(f"unknown customer {customer_id!r}")
        return customer

    def _note(self, line: str) -> None:
        """What the pages did (a sign-in decision, a new limit), on stderr when verbose."""
        if self.verbose:
            sys.stderr.write(f"emulator: {line}\n")

    # -- routing -----------------------------------------------------------------------

    def misdirected(self, request: Request) -> Response | None:
        """421 if the Host header does not name this emulator (DNS rebinding), else None."""
        host = request.headers.get("host")
        if self._host_check.allows(host, self.port):
            return None
        detail = (
            f"This emulator does not answer to the host {host!r}: it answers to its own "
            "address and to localhost, 127.0.0.1 and [::1] with its port. To use another "
            "name, start it with --allow-host NAME (Emulator(allowed_hosts=[...]))."
        )
        return problem_response(ApiError("misdirected_request", detail))

    def dispatch(self, request: Request) -> Response:
        """Answer one request (faults aside): API, control endpoints, or pages."""
        try:
            if request.path.startswith("/api/v1/"):
                return handle_api(self.store, request)
            if request.path == "/_emulator/health":
                return json_response(200, {"ok": True})
            if request.path.startswith("/_emulator/"):
                if not self.admin:
                    return problem_response(ApiError("not_found", "The admin API is off."))
                return handle_admin(self, request)
            return handle_page(self.store, request, self._site)
        except Exception:
            # A bug in the emulator: say so on stderr, answer like the real service would.
            traceback.print_exc()
            return problem_response(ApiError("server_error", "Internal error in the emulator."))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen() backlog: 200+ clients connecting at once

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if not open_:
                self._connections.discard(connection)
            elif self.stopping.is_set():
                # Accepted just before stop(): close_connections() has already run.
                _shutdown(connection)
            else:
                self._connections.add(connection)

    def close_connections(self) -> None:
        """Wake every connection thread: idle keep-alives, latencies, endless bodies."""
        self.stopping.set()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away mid-request is routine here (faults provoke it); stay quiet.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        connection.shutdown(socket.SHUT_RDWR)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _BodyError(Exception):
    """The request body could not be read; `error` is the answer, if any can be sent."""

    def __init__(self, error: ApiError | None) -> None:
        super().__init__(error)
        self.error = error


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
    # algorithm meets delayed ACKs and every kept-alive request stalls ~40 ms.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "SmallTransfersEmulator/0.1"
    timeout = 120  # seconds an idle keep-alive connection keeps its thread
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def version_string(self) -> str:
        return self.server_version  # without the Python version

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Path only: no query strings (they carry state and codes) and never bodies.
        if self.server.emulator.verbose:
            path = self.path.partition("?")[0]
            sys.stderr.write(f"{self.command} {path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            super().log_message(format, *args)

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        try:
            body = self._read_body()
        except _BodyError as failure:
            self.close_connection = True
            if failure.error is not None:
                self._send(problem_response(failure.error))
            return
        # HEAD is answered as GET; `_send` leaves the body out.
        method = "GET" if self.command == "HEAD" else self.command
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(method, path, query, headers, body)
        emulator = self.server.emulator
        # Checked before the faults, so a refused request uses none of a plan's count.
        refusal = emulator.misdirected(request)
        try:
            if refusal is not None:
                self._send(refusal)
            elif (plan := emulator.faults.take(path)) is None:
                self._send(emulator.dispatch(request))
            else:
                self._serve_with_fault(plan, request)
        except OSError:
            self.close_connection = True  # the client went away

    def _serve_with_fault(self, plan: FaultPlan, request: Request) -> None:
        if plan.latency:
            self.server.stopping.wait(plan.latency)
        if plan.drop == "before":
            self.close_connection = True
            return
        if plan.error is not None:
            self._send(problem_response(ApiError(plan.error, f"Injected fault: {plan.error}.")))
            return
        response = self.server.emulator.dispatch(request)
        if plan.drop == "after":
            self.close_connection = True
        elif plan.endless_body:
            self._send_endless()
        else:
            if plan.malformed:
                response = malformed_response()
            elif plan.huge_body:
                response = huge_response()
            self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _send_endless(self) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(ENDLESS_CONTENT_LENGTH))
        self.send_header("Connection", "close")
        self.end_headers()
        trickle(self.wfile.write, self.server.stopping)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
            if size < 0:
                raise ValueError(length)
        except ValueError:
            raise _BodyError(ApiError("invalid_request", "Bad Content-Length.")) from None
        if size > MAX_BODY_BYTES:
            raise _BodyError(ApiError("payload_too_large", "The request body is too large."))
        body = self.rfile.read(size)
        if len(body) < size:
            raise _BodyError(None)  # the client hung up mid-body
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _BodyError(None)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BodyError(ApiError("invalid_request", "Bad chunked encoding.")) from None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers, ignored
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(ApiError("payload_too_large", "The request body is too large."))
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _BodyError(None)
            chunks.append(chunk)
            self.rfile.readline(1024)  # the CRLF after each chunk
