"""The built-in transports (``st_middleware._transport``): concurrency, the money rule, parsing.

- Charges in flight scale with the visitors in flight: 64 concurrent priced
  requests reach a slow Small Transfers at once, on both adapters (the
  endpoint holds every reply until it has seen 64 calls).
- Only a failure to connect is a ``ConnectError``; once the request may have
  left, failures are read/protocol errors (never retried by ``_api._call``).
- A kept-alive connection the server closed while idle is replaced before use.
- Timeouts come from the request; bodies are streamed (the drivers' cap works).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from st_middleware import Customer, Request, SmallTransfersASGI, SmallTransfersWSGI
from st_middleware._session import Cookies, Session
from st_middleware._transport import (
    AsyncTransport,
    SyncTransport,
    _Body,
    _parse_head,
    default_transport,
)

pytestmark = pytest.mark.anyio

HOST = "127.0.0.1:8000"
N = 64
TIMEOUTS = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


# -- a raw loopback server ----------------------------------------------------------------


class RawServer:
    """Accepts on 127.0.0.1 and runs ``handler(sock)`` per connection in a thread."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.handler(conn)

    def __enter__(self) -> RawServer:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self._conns:  # wakes the handlers still reading a kept-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


def read_request(conn: socket.socket, buffer: bytearray) -> bytes | None:
    """One request (head + Content-Length body) from ``conn``; None at EOF."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < end + length:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    del buffer[: end + length]
    return head


def reply(status: int = 201, body: bytes = b'{"id":"t1"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        len(body),
        extra,
        body,
    )


class Barrier:
    """An endpoint that holds every charge until it has seen ``n`` at once."""

    def __init__(self, n: int, wait: float = 10.0) -> None:
        self.n = n
        self.wait = wait
        self.cond = threading.Condition()
        self.pending = 0
        self.seen = 0
        self.most = 0

    def __call__(self, conn: socket.socket) -> None:
        buffer = bytearray()
        while read_request(conn, buffer) is not None:
            with self.cond:
                self.pending += 1
                self.seen += 1
                self.most = max(self.most, self.pending)
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.seen >= self.n, timeout=self.wait)
                self.pending -= 1
            conn.sendall(reply())


def keywords(url: str) -> dict[str, Any]:
    return {
        "publishable_key": "pk_test_transport",
        "secret_key": "sk_test_transport",
        "session_secret": "transport-tests-session-secret-0123456789",
        "base_url": url,
        "pricing": {"/paid": 1000},
        "timeout": 15.0,
    }


def session_pair(mw: Any) -> str:
    cookies = Cookies(mw.settings)
    request = Request(method="GET", scheme="http", host=HOST, path="/")
    customer = Customer("cus_1", "Ada", "Lovelace", "ada@example.com", False)
    header = cookies.set_session(request, Session("tok_" + "x" * 40, customer, int(time.time())))
    return header.split(";", 1)[0]


# -- charges in flight scale with the visitors in flight -------------------------------------


async def test_64_concurrent_asgi_charges_are_in_flight_at_once() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"paid"})

    barrier = Barrier(N)
    with RawServer(barrier) as server:
        mw = SmallTransfersASGI(app, **keywords(server.url))
        pair = session_pair(mw)
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
            answers = await asyncio.gather(
                *(client.get("/paid", headers={"Cookie": pair}) for _ in range(N))
            )
        await mw.aclose()
    assert [a.status_code for a in answers] == [200] * N
    assert barrier.most == N, f"only {barrier.most} charges were in flight at once"
    assert server.connections == N


def test_64_concurrent_wsgi_charges_are_in_flight_at_once() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"paid"]

    barrier = Barrier(N)
    with RawServer(barrier) as server:
        mw = SmallTransfersWSGI(app, **keywords(server.url))
        pair = session_pair(mw)

        def visit(_: int) -> str:
            seen: list[str] = []
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/paid",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8000",
                "HTTP_HOST": HOST,
                "HTTP_COOKIE": pair,
                "wsgi.url_scheme": "http",
            }
            body = mw(environ, lambda status, headers, exc_info=None: seen.append(status))
            try:
                b"".join(body)
            finally:
                getattr(body, "close", lambda: None)()
            return seen[0]

        with ThreadPoolExecutor(N) as pool:
            statuses = list(pool.map(visit, range(N)))
        mw.close()
    assert statuses == ["200 OK"] * N
    assert barrier.most == N, f"only {barrier.most} charges were in flight at once"
    assert server.connections == N


def test_a_pool_limit_makes_the_rest_wait_then_pool_timeout() -> None:
    """``max_connections`` still bounds a runaway: the request beyond it never leaves."""
    barrier = Barrier(2, wait=1.0)
    with RawServer(barrier) as server:
        transport = SyncTransport(max_connections=1)
        hold = threading.Thread(target=lambda: post_sync(transport, server.url))
        hold.start()
        time.sleep(0.2)
        timeouts = {**TIMEOUTS, "pool": 0.2}
        with pytest.raises(httpx.PoolTimeout):
            post_sync(transport, server.url, timeouts)
        hold.join()
        transport.close()
    assert barrier.seen == 1


# -- the money rule: ConnectError only when nothing was sent ------------------------------------


def post_request(url: str, timeouts: dict[str, float] | None = None) -> httpx.Request:
    return httpx.Request(
        "POST",
        url + "/api/v1/transactions",
        content=b'{"amountMicros":1}',
        headers={"Content-Type": "application/json", "Idempotency-Key": "k1"},
        extensions={"timeout": timeouts or TIMEOUTS},
    )


def post_sync(
    transport: SyncTransport, url: str, timeouts: dict[str, float] | None = None
) -> tuple[int, bytes]:
    response = transport.handle_request(post_request(url, timeouts))
    try:
        return response.status_code, b"".join(response.iter_bytes())
    finally:
        response.close()


async def post_async(
    transport: AsyncTransport, url: str, timeouts: dict[str, float] | None = None
) -> tuple[int, bytes]:
    response = await transport.handle_async_request(post_request(url, timeouts))
    try:
        return response.status_code, b"".join([c async for c in response.aiter_bytes()])
    finally:
        await response.aclose()


def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def drop_without_answer(conn: socket.socket) -> None:
    read_request(conn, bytearray())  # the charge arrived; the server dies before answering


def never_answer(conn: socket.socket) -> None:
    read_request(conn, bytearray())
    conn.recv(1)  # until the client gives up (or the server stops)


def one_then_close(conn: socket.socket) -> None:
    """Answers one request, then closes the kept-alive connection while it is idle."""
    if read_request(conn, bytearray()) is not None:
        conn.sendall(reply(200))


@pytest.fixture(params=["sync", "async"])
def send(request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[int, bytes]]]:
    """``send(url, timeouts=None)`` through one transport of either kind (kept for the test)."""
    if request.param == "sync":
        sync = SyncTransport()
        yield lambda url, timeouts=None: post_sync(sync, url, timeouts)
        sync.close()
        return
    loop = asyncio.new_event_loop()
    transport = AsyncTransport()
    yield lambda url, timeouts=None: loop.run_until_complete(post_async(transport, url, timeouts))
    loop.run_until_complete(transport.aclose())
    loop.close()


def test_refused_connection_is_a_connect_error(send: Callable[..., Any]) -> None:
    with pytest.raises(httpx.ConnectError):
        send(dead_url())


def test_a_drop_after_sending_is_never_a_connect_error(send: Callable[..., Any]) -> None:
    with RawServer(drop_without_answer) as server, pytest.raises(httpx.HTTPError) as caught:
        send(server.url)
    assert isinstance(caught.value, httpx.RemoteProtocolError)
    assert not isinstance(caught.value, (httpx.ConnectError, httpx.ConnectTimeout))


def test_no_answer_within_the_read_timeout_is_a_read_timeout(send: Callable[..., Any]) -> None:
    with RawServer(never_answer) as server:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            send(server.url, {**TIMEOUTS, "read": 0.3})
        waited = time.monotonic() - started
    assert waited < 5, "the read timeout was not honoured"  # a generous bound, not a timing


def test_a_connection_closed_while_idle_is_replaced(send: Callable[..., Any]) -> None:
    with RawServer(one_then_close) as server:
        for _ in range(3):
            assert send(server.url) == (200, b'{"id":"t1"}')
            time.sleep(0.05)  # the server's FIN arrives while the connection is idle
    assert server.connections == 3


def test_kept_alive_connections_are_reused(send: Callable[..., Any]) -> None:
    def keep(conn: socket.socket) -> None:
        buffer = bytearray()
        while read_request(conn, buffer) is not None:
            conn.sendall(reply(200))

    with RawServer(keep) as server:
        for _ in range(20):
            assert send(server.url)[0] == 200
    assert server.connections == 1


def test_a_huge_body_is_streamed_not_buffered() -> None:
    """The drivers stop at the 64 KiB cap: the transport hands the body over as it arrives."""
    big = b"x" * (4 * 1024 * 1024)

    def huge(conn: socket.socket) -> None:
        read_request(conn, bytearray())
        conn.sendall(reply(200, big))

    with RawServer(huge) as server:
        transport = SyncTransport()
        response = transport.handle_request(post_request(server.url))
        first = next(iter(response.iter_raw()))
        response.close()
        transport.close()
    assert 0 < len(first) <= 1024 * 1024


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


def tls_server(cert: str, key: str) -> RawServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def serve(conn: socket.socket) -> None:
        try:
            wrapped = context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            return  # the client refused our certificate
        buffer = bytearray()
        while read_request(wrapped, buffer) is not None:
            wrapped.sendall(reply(201))

    return RawServer(serve)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_https_is_verified_and_kept_alive(tls_files: tuple[str, str], kind: str) -> None:
    cert, key = tls_files
    trusting = ssl.create_default_context(cafile=cert)
    with tls_server(cert, key) as server:
        url = server.url.replace("http://", "https://")
        if kind == "sync":
            sync = SyncTransport(ssl_context=trusting)
            answers = [post_sync(sync, url) for _ in range(3)]
            sync.close()
            with pytest.raises(httpx.ConnectError):  # an unknown certificate: nothing sent
                post_sync(SyncTransport(), url)
        else:

            async def go() -> list[tuple[int, bytes]]:
                transport = AsyncTransport(ssl_context=trusting)
                done = [await post_async(transport, url) for _ in range(3)]
                await transport.aclose()
                with pytest.raises(httpx.ConnectError):
                    await post_async(AsyncTransport(), url)
                return done

            answers = asyncio.run(go())
    assert answers == [(201, b'{"id":"t1"}')] * 3
    assert server.connections == 2  # one kept alive for the three, one refused


# -- the parser --------------------------------------------------------------------------------


def test_a_chunked_body_with_an_interim_100_is_decoded() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    found = _parse_head(data)
    assert found is not None
    head, end = found
    assert head.status == 201
    body = _Body(head)
    out = [c for i in range(end, len(data)) for c in body.feed(data[i : i + 1])]  # byte by byte
    assert b"".join(out) == b"hello world"
    assert body.done
    assert not body.extra


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n bad: fold\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
)
def test_malformed_heads_are_protocol_errors(head: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        _parse_head(head)


def test_a_body_cut_short_is_a_protocol_error() -> None:
    found = _parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert found is not None
    body = _Body(found[0])
    assert body.feed(b"12345") == [b"12345"]
    with pytest.raises(httpx.RemoteProtocolError):
        body.eof()


def test_connection_close_and_bytes_past_the_end_prevent_reuse() -> None:
    closing = _parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert closing is not None
    assert not closing[0].keep_alive
    found = _parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    assert found is not None
    assert found[0].keep_alive
    body = _Body(found[0])
    assert body.feed(b"okEXTRA") == [b"ok"]
    assert body.done
    assert body.extra


# -- which transport -----------------------------------------------------------------------


def test_the_merchants_transport_wins_and_a_proxy_from_the_environment_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine = httpx.MockTransport(lambda request: httpx.Response(201, json={"id": "x"}))
    options = {"api_url": "https://smalltransfers.com/api/v1", "max_connections": 8}
    assert default_transport(asynchronous=False, transport=mine, **options) is mine
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert isinstance(default_transport(asynchronous=False, **options), SyncTransport)
    assert isinstance(default_transport(asynchronous=True, **options), AsyncTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert isinstance(default_transport(asynchronous=False, **options), httpx.HTTPTransport)
    assert isinstance(default_transport(asynchronous=True, **options), httpx.AsyncHTTPTransport)
    monkeypatch.setenv("NO_PROXY", "smalltransfers.com")
    assert isinstance(default_transport(asynchronous=False, **options), SyncTransport)


def test_requests_carry_their_timeouts() -> None:
    from st_middleware import _api
    from st_middleware._config import Settings

    settings = Settings.from_options(
        publishable_key="pk_test_x",
        secret_key="sk_test_x",
        session_secret="transport-tests-session-secret-0123456789",
        base_url="http://127.0.0.1:9",
        pricing=None,
        options={"timeout": 7.0},
    )
    request = _api._post(settings, "/transactions", {"amountMicros": 1}, "key")
    assert request.extensions["timeout"] == {"connect": 5.0, "read": 7.0, "write": 7.0, "pool": 7.0}
    assert json.loads(request.content)["amountMicros"] == 1
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "headers", [{"X-A": "b\r\nX-Injected: 1"}, {"X-A": "b\nc"}, {"X-A": "b\rc"}, {"X:A": "b"}]
)
def test_a_header_that_would_split_the_request_is_refused(headers: dict[str, str]) -> None:
    from st_middleware._transport import _encode

    request = httpx.Request("POST", "http://127.0.0.1:9/x", content=b"{}", headers=headers)
    with pytest.raises(httpx.LocalProtocolError):
        _encode(request)
