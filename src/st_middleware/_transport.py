"""The HTTP/1.1 transports to Small Transfers: standard library only, pooled, uncapped.

The middleware sends a handful of small JSON POSTs to one origin. httpx's own
transports (httpcore) spend most of a priced request's CPU on pool
bookkeeping that grows with the requests in flight. These two transports do
the same job under httpx's transport interface, with much less:

- :class:`SyncTransport` (``httpx.BaseTransport``, WSGI): blocking sockets,
  one shared LIFO pool of kept-alive connections for every thread.
- :class:`AsyncTransport` (``httpx.AsyncBaseTransport``, ASGI): an
  ``asyncio.Protocol`` per connection, one LIFO pool per event loop.

The pool grows to the requests in flight (at most ``max_connections``; a
request beyond waits up to the pool timeout, then ``httpx.PoolTimeout``), and
idle connections are kept alive for ``keepalive_expiry`` seconds.

Money rule (see :func:`st_middleware._api._call`): ``httpx.ConnectError`` /
``ConnectTimeout`` / ``PoolTimeout`` are raised ONLY when nothing of the request
was written. Once the first byte may have left, a failure is a
``WriteError``/``WriteTimeout``, ``ReadError``/``ReadTimeout`` or
``RemoteProtocolError``, which the flow never retries. A kept-alive connection
that the server closed while idle (it reads as readable, or its protocol saw
EOF) is noticed before reuse and replaced. Timeouts come from
``request.extensions["timeout"]`` (connect, read, write, pool). The response
body is streamed as it arrives, so the drivers' size cap stops reading.

:func:`default_transport` picks what an adapter uses: the merchant's
``transport=``; else httpx's own transport when an HTTP(S) proxy from the
environment applies to Small Transfers (these transports do not speak to
proxies); else these.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

__all__ = ["AsyncTransport", "SyncTransport", "api_url", "default_transport"]

#: A response head larger than this is not a Small Transfers answer.
MAX_HEAD_BYTES = 64 * 1024
#: Chunk-size and trailer lines longer than this are refused.
MAX_LINE_BYTES = 4096
_RECV = 65536
_DEFAULT_TIMEOUT = 10.0
_NO_BODY_STATUS = frozenset({204, 304})

Origin = tuple[str, str, int]
Headers = list[tuple[bytes, bytes]]


# -- the request on the wire ---------------------------------------------------------------


_URLS: dict[str, httpx.URL] = {}
_MAX_URLS = 64


def api_url(text: str) -> httpx.URL:
    """``httpx.URL(text)``, parsed once per endpoint (captures name their charge: bounded)."""
    url = _URLS.get(text)
    if url is None:
        url = httpx.URL(text)
        if len(_URLS) >= _MAX_URLS:
            _URLS.clear()
        _URLS[text] = url
    return url


def _origin(url: httpx.URL) -> Origin:
    scheme = url.scheme
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"cannot send to a {scheme!r} URL")
    port = url.port or (443 if scheme == "https" else 80)
    return scheme, url.host, port


def _encode(request: httpx.Request) -> bytes:
    """The request's bytes: request line, headers (Host included by httpx), body."""
    raw = request.headers.raw
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in raw:
        if b":" in name:
            raise httpx.LocalProtocolError("a header name holds a colon")
        lines.append(name + b": " + value)
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    # Exactly the line breaks put here: none inside a name or value (no header injection).
    if head.count(b"\n") != len(raw) + 2 or head.count(b"\r") != len(raw) + 2:
        raise httpx.LocalProtocolError("a header holds a line break")
    body = request.content  # the middleware's requests hold their body in memory
    return head + body if body else head


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None, float]:
    """(connect, read, write, pool) from the request, as httpx's client sets them."""
    found = request.extensions.get("timeout")
    if not found:
        return _DEFAULT_TIMEOUT, _DEFAULT_TIMEOUT, _DEFAULT_TIMEOUT, _DEFAULT_TIMEOUT
    pool = found.get("pool")
    return (
        found.get("connect"),
        found.get("read"),
        found.get("write"),
        3600.0 if pool is None else pool,
    )


# -- the response: an incremental HTTP/1.1 parser ------------------------------------------


class _Head:
    """A parsed response head and how its body is framed."""

    __slots__ = ("headers", "keep_alive", "length", "reason", "status", "until_close")

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        length: int,
        until_close: bool,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        #: Body bytes still due (fixed length), or -1 for chunked.
        self.length = length
        self.until_close = until_close
        self.keep_alive = keep_alive


def _protocol_error(text: str) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"Small Transfers answered malformed HTTP: {text}")


def _parse_head(data: bytes | bytearray) -> tuple[_Head, int] | None:
    """The first final (non-1xx) response head in ``data`` and where it ends; None: need more."""
    start = 0
    while True:
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            if len(data) - start > MAX_HEAD_BYTES:
                raise _protocol_error("head too large")
            return None
        lines = bytes(data[start:end]).split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise _protocol_error("bad status line")
        code = status_line[1]
        if len(code) != 3 or not code.isdigit():
            raise _protocol_error("bad status code")
        status = int(code)
        start = end + 4
        if 100 <= status < 200:
            if status == 101:
                raise _protocol_error("unexpected protocol switch")
            continue  # informational: the final answer follows
        return _head(status, status_line, lines), start


class _HeadReader:
    """Gathers the bytes of a response head as they arrive (either transport feeds it)."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def feed(self, more: bytes) -> tuple[_Head, _Body, list[bytes]] | None:
        """The head, its body reader and the body bytes already here; None: more to come."""
        if not more:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        data = self.data = self.data + more
        found = _parse_head(data)
        if found is None:
            return None
        head, end = found
        body = _Body(head)
        return head, body, body.feed(data[end:])


def _response(head: _Head, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> httpx.Response:
    return httpx.Response(
        head.status,
        headers=head.headers,
        stream=stream,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
    )


def _head(status: int, status_line: list[bytes], lines: list[bytes]) -> _Head:
    headers: Headers = []
    length = None
    chunked = False
    close = status_line[0] != b"HTTP/1.1"
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or name[:1] in b" \t":
            raise _protocol_error("bad header line")
        value = value.strip(b" \t")
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise _protocol_error("bad Content-Length")
            length = int(value)
        elif lower == b"transfer-encoding":
            codings = [c.strip() for c in value.lower().split(b",")]
            if codings[-1:] != [b"chunked"] or codings.count(b"chunked") != 1:
                raise _protocol_error("unsupported Transfer-Encoding")
            chunked = True
        elif lower == b"connection":
            tokens = [t.strip() for t in value.lower().split(b",")]
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens and status_line[0] == b"HTTP/1.0":
                close = False
    reason = status_line[2] if len(status_line) > 2 else b""
    if status in _NO_BODY_STATUS:
        return _Head(status, reason, headers, 0, False, not close)
    if chunked:
        # Transfer-Encoding wins over Content-Length (RFC 9112 6.3); the message
        # may be smuggling, so the connection is not reused.
        return _Head(status, reason, headers, -1, False, not close and length is None)
    if length is None:
        return _Head(status, reason, headers, 0, True, False)
    return _Head(status, reason, headers, length, False, not close)


class _Body:
    """Decodes a body from the bytes that arrive; ``done`` once the message ended."""

    __slots__ = ("_buffer", "_chunk_left", "_state", "_to_read", "done", "extra", "until_close")

    def __init__(self, head: _Head) -> None:
        self.until_close = head.until_close
        self._to_read = head.length  # fixed length: bytes still due
        self._state = "size" if head.length < 0 else "fixed"
        self._buffer = b""
        self._chunk_left = 0
        self.done = not head.until_close and head.length == 0
        #: Bytes past the end of the message (the connection is then not reused).
        self.extra = False

    def feed(self, data: bytes) -> list[bytes]:
        """The body bytes in ``data`` (decoded); sets ``done`` at the end of the message."""
        if self.done:
            if data:
                self.extra = True
            return []
        if self.until_close:
            return [data] if data else []
        if self._state == "fixed":
            due = self._to_read
            if len(data) < due:
                self._to_read = due - len(data)
                return [data] if data else []
            self.done = True
            self._to_read = 0
            if len(data) > due:
                self.extra = True
                data = data[:due]
            return [data] if data else []
        return self._chunked(data)

    def _chunked(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buffer = self._buffer + data if self._buffer else data
        at = 0
        while not self.done:
            state = self._state
            if state == "data":
                take = buffer[at : at + self._chunk_left]
                if not take:
                    break
                out.append(take)
                at += len(take)
                self._chunk_left -= len(take)
                if self._chunk_left:
                    break
                self._state = "crlf"
                continue
            end = buffer.find(b"\r\n", at)
            if end < 0:
                if len(buffer) - at > MAX_LINE_BYTES:
                    raise _protocol_error("chunk line too long")
                break
            line = buffer[at:end]
            at = end + 2
            if state == "size":
                size = line.split(b";", 1)[0].strip()
                try:
                    if not size or size.startswith((b"-", b"+", b"0x", b"0X")):
                        raise ValueError
                    self._chunk_left = int(size, 16)
                except ValueError:
                    raise _protocol_error("bad chunk size") from None
                self._state = "data" if self._chunk_left else "trailer"
            elif state == "crlf":
                if line:
                    raise _protocol_error("chunk without its CRLF")
                self._state = "size"
            elif not line:  # the end of the trailers
                self.done = True
        rest = buffer[at:]
        if self.done:
            self._buffer = b""
            if rest:
                self.extra = True
        else:
            self._buffer = rest
        return out

    def eof(self) -> None:
        """The peer closed: fine when reading until close, else the message was cut."""
        if self.until_close:
            self.done = True
        elif not self.done:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )


# -- the synchronous transport (WSGI) ------------------------------------------------------


class _SyncConnection:
    __slots__ = ("idle_since", "origin", "sock", "timeout")

    def __init__(self, sock: socket.socket, origin: Origin, timeout: float | None) -> None:
        self.sock = sock
        self.origin = origin
        self.timeout = timeout
        self.idle_since = 0.0

    def set_timeout(self, timeout: float | None) -> None:
        if timeout != self.timeout:
            self.sock.settimeout(timeout)
            self.timeout = timeout

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _stale(sock: Any) -> bool:
    """An idle kept-alive socket that reads as ready was closed by the server (or is junk)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError, TypeError):
        return True


class _Slots:
    """At most ``limit`` requests in flight per pool; the rest wait up to the pool timeout.

    The common case is one uncontended lock: no semaphore object per request.
    """

    __slots__ = ("_cond", "_limit", "_lock", "_used")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    def acquire(self, timeout: float) -> None:
        with self._lock:
            if self._used >= self._limit:
                deadline = time.monotonic() + timeout
                while self._used >= self._limit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise httpx.PoolTimeout("no connection to Small Transfers was free")
                    self._cond.wait(left)
            self._used += 1

    def release(self) -> None:
        with self._lock:
            self._used -= 1
            self._cond.notify()


class _Settings:
    """What both transports are configured with; TLS set up on the first https call."""

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limit = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._start()

    def _start(self) -> None:
        """The pool's own state (each transport keeps it differently)."""
        raise NotImplementedError

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl


class SyncTransport(_Settings, httpx.BaseTransport):
    """HTTP/1.1 over blocking sockets with one LIFO pool shared by every thread."""

    def _start(self) -> None:
        self._idle: collections.deque[_SyncConnection] = collections.deque()
        self._idle_lock = threading.Lock()
        self._slots = _Slots(self._limit)
        self._closed = False

    # -- the pool

    def _checkout(self, origin: Origin) -> _SyncConnection | None:
        now = time.monotonic()
        while True:
            with self._idle_lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if (
                connection.origin == origin
                and now - connection.idle_since < self._expiry
                and not _stale(connection.sock)
            ):
                return connection
            connection.close()

    def _checkin(self, connection: _SyncConnection) -> None:
        now = connection.idle_since = time.monotonic()
        expired = []
        with self._idle_lock:
            if self._closed:
                expired.append(connection)
            else:
                self._idle.append(connection)
                idle = self._idle
                # The oldest idle connections sit at the left: drop the expired ones.
                while idle and now - idle[0].idle_since >= self._expiry:
                    expired.append(idle.popleft())
        for old in expired:
            old.close()

    def _connect(self, origin: Origin, timeout: float | None) -> _SyncConnection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to Small Transfers timed out: {exc}") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to Small Transfers: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl_context().wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(f"TLS handshake timed out: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise httpx.ConnectError(f"TLS handshake with Small Transfers failed: {exc}") from None
        return _SyncConnection(sock, origin, timeout)

    # -- one request

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request.url)
        data = _encode(request)
        connect, read, write, pool = _timeouts(request)
        self._slots.acquire(pool)
        try:
            connection = self._checkout(origin) or self._connect(origin, connect)
        except BaseException:
            self._slots.release()
            raise
        # From here on, bytes may reach Small Transfers: never a ConnectError.
        try:
            connection.set_timeout(write)
            connection.sock.sendall(data)
            connection.set_timeout(read)
            head, body, first = self._read_head(connection.sock)
        except BaseException as exc:
            connection.close()
            self._slots.release()
            raise _after_send(exc, reading=False) from None
        return _response(head, _SyncStream(self, connection, head, body, first))

    @staticmethod
    def _read_head(sock: socket.socket) -> tuple[_Head, _Body, list[bytes]]:
        reader = _HeadReader()
        while (got := reader.feed(sock.recv(_RECV))) is None:
            pass
        return got

    def _release(self, connection: _SyncConnection, reuse: bool) -> None:
        try:
            if reuse:
                self._checkin(connection)
            else:
                connection.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._idle_lock:
            self._closed = True
            idle, self._idle = list(self._idle), collections.deque()
        for connection in idle:
            connection.close()


def _after_send(exc: BaseException, *, reading: bool) -> BaseException:
    """The httpx error for a failure once the request may have been (partly) sent."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout("Small Transfers did not answer in time")
    if isinstance(exc, (OSError, ssl.SSLError)):
        return httpx.ReadError(f"the connection to Small Transfers failed: {exc}")
    return exc


class _SyncStream(httpx.SyncByteStream):
    __slots__ = ("_body", "_connection", "_first", "_head", "_transport")

    def __init__(
        self,
        transport: SyncTransport,
        connection: _SyncConnection,
        head: _Head,
        body: _Body,
        first: list[bytes],
    ) -> None:
        self._transport: SyncTransport | None = transport
        self._connection = connection
        self._head = head
        self._body = body
        self._first = first

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        self._first = []
        body = self._body
        sock = self._connection.sock
        while not body.done:
            try:
                data = sock.recv(_RECV)
            except BaseException as exc:
                self._finish(reuse=False)
                raise _after_send(exc, reading=True) from None
            if not data:
                body.eof()  # raises when the message was cut
                break
            yield from body.feed(data)

    def _finish(self, reuse: bool) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport._release(self._connection, reuse)

    def close(self) -> None:
        body = self._body
        self._finish(body.done and not body.extra and self._head.keep_alive)


# -- the asynchronous transport (ASGI) -----------------------------------------------------


class _AsyncConnection(asyncio.Protocol):
    """One connection: what arrived, whether the peer closed, and who waits for more."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.paused = False
        self.idle_since = 0.0
        #: The socket's descriptor, polled before reuse (-1: unknown).
        self.fileno = -1

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        writable = self.writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        writable = self.writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # used by the transport

    def usable(self) -> bool:
        transport = self.transport
        return (
            not self.eof
            and not self.buffer
            and transport is not None
            and not transport.is_closing()
        )

    def reusable(self) -> bool:
        """Usable, and its socket has nothing to read: a FIN the loop has not seen yet
        (the server closed it while idle) is caught here, before a request is written."""
        return self.usable() and (self.fileno < 0 or not _stale(self.fileno))

    async def write(self, data: bytes, timeout: float | None) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise httpx.WriteError("the connection to Small Transfers was closed")
        transport.write(data)
        if self.paused:  # the kernel buffer is full: wait, within the write timeout
            self.writable = self.loop.create_future()
            try:
                await _within(self.writable, timeout, self.loop)
            except asyncio.TimeoutError:
                raise httpx.WriteTimeout(
                    "Small Transfers did not take the request in time"
                ) from None
            finally:
                self.writable = None
            if self.eof:
                raise httpx.WriteError("the connection to Small Transfers was closed")

    async def receive(self, timeout: float | None) -> bytes:
        """The bytes that arrived (waiting for some within ``timeout``); b"" at EOF."""
        if not self.buffer and not self.eof:
            self.waiter = self.loop.create_future()
            try:
                await _within(self.waiter, timeout, self.loop)
            except asyncio.TimeoutError:
                raise httpx.ReadTimeout("Small Transfers did not answer in time") from None
            finally:
                self.waiter = None
        data, self.buffer = self.buffer, b""
        if not data and self.error is not None:
            raise httpx.ReadError(f"the connection to Small Transfers failed: {self.error}")
        return data

    def close(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.close()


async def _within(
    future: asyncio.Future[None], timeout: float | None, loop: asyncio.AbstractEventLoop
) -> None:
    """Await ``future``, raising ``asyncio.TimeoutError`` after ``timeout`` (no extra task)."""
    if timeout is None:
        await future
        return
    timer = loop.call_later(timeout, _expire, future)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


class _AsyncPool:
    """The idle connections and the in-flight count of one event loop."""

    __slots__ = ("idle", "limit", "loop", "used", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.used = 0
        self.idle: collections.deque[_AsyncConnection] = collections.deque()
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, timeout: float) -> None:
        if self.used < self.limit:
            self.used += 1
            return
        waiter = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            await _within(waiter, timeout, self.loop)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # the slot was handed over just as we gave up
            if isinstance(exc, asyncio.TimeoutError):
                raise httpx.PoolTimeout("no connection to Small Transfers was free") from None
            raise
        # Handed over by release(): ``used`` already counts this request.

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over
                return
        self.used -= 1


class AsyncTransport(_Settings, httpx.AsyncBaseTransport):
    """HTTP/1.1 over ``asyncio`` protocols, with one LIFO pool per event loop."""

    def _start(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncPool] = (
            weakref.WeakKeyDictionary()
        )
        self._last: _AsyncPool | None = None

    def _pool(self) -> _AsyncPool:
        loop = asyncio.get_running_loop()
        pool = self._last
        if pool is not None and pool.loop is loop:
            return pool
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _AsyncPool(loop, self._limit)
        self._last = pool
        return pool

    def _checkout(self, pool: _AsyncPool, origin: Origin) -> _AsyncConnection | None:
        idle = pool.idle
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if (
                connection.origin == origin
                and now - connection.idle_since < self._expiry
                and connection.reusable()
            ):
                return connection
            connection.close()
        return None

    def _checkin(self, pool: _AsyncPool, connection: _AsyncConnection) -> None:
        now = connection.idle_since = time.monotonic()
        idle = pool.idle
        idle.append(connection)
        while idle and now - idle[0].idle_since >= self._expiry:
            idle.popleft().close()

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, timeout: float | None
    ) -> _AsyncConnection:
        scheme, host, port = origin
        connection = _AsyncConnection(loop, origin)
        tls: dict[str, Any] = {}
        if scheme == "https":
            tls = {"ssl": self._ssl_context(), "server_hostname": host}
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: connection, host, port, **tls), timeout
            )
        except asyncio.TimeoutError:
            connection.close()
            raise httpx.ConnectTimeout("connecting to Small Transfers timed out") from None
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise httpx.ConnectError(f"cannot connect to Small Transfers: {exc}") from None
        assert connection.transport is not None
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError, ValueError):
                connection.fileno = sock.fileno()
            with contextlib.suppress(OSError, AttributeError):  # not a TCP socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request.url)
        data = _encode(request)
        connect, read, write, pool_timeout = _timeouts(request)
        pool = self._pool()
        await pool.acquire(pool_timeout)
        try:
            connection = self._checkout(pool, origin) or await self._connect(
                pool.loop, origin, connect
            )
        except BaseException:
            pool.release()
            raise
        # From here on, bytes may reach Small Transfers: never a ConnectError.
        try:
            await connection.write(data, write)
            head, body, first = await self._read_head(connection, read)
        except BaseException as exc:
            connection.close()
            pool.release()
            raise _after_send(exc, reading=False) from None
        return _response(head, _AsyncStream(self, pool, connection, head, body, first, read))

    @staticmethod
    async def _read_head(
        connection: _AsyncConnection, timeout: float | None
    ) -> tuple[_Head, _Body, list[bytes]]:
        reader = _HeadReader()
        while (got := reader.feed(await connection.receive(timeout))) is None:
            pass
        return got

    def _release(self, pool: _AsyncPool, connection: _AsyncConnection, reuse: bool) -> None:
        if reuse and connection.usable():
            self._checkin(pool, connection)
        else:
            connection.close()
        pool.release()

    async def aclose(self) -> None:
        """Close the running loop's idle connections (each loop has its own pool)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - called outside a loop
            return
        pool = self._pools.pop(loop, None)
        if self._last is pool:
            self._last = None
        if pool is not None:
            while pool.idle:
                pool.idle.pop().close()


class _AsyncStream(httpx.AsyncByteStream):
    __slots__ = ("_body", "_connection", "_first", "_head", "_pool", "_timeout", "_transport")

    def __init__(
        self,
        transport: AsyncTransport,
        pool: _AsyncPool,
        connection: _AsyncConnection,
        head: _Head,
        body: _Body,
        first: list[bytes],
        timeout: float | None,
    ) -> None:
        self._transport: AsyncTransport | None = transport
        self._pool = pool
        self._connection = connection
        self._head = head
        self._body = body
        self._first = first
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._first:
            yield chunk
        self._first = []
        body = self._body
        connection = self._connection
        while not body.done:
            try:
                data = await connection.receive(self._timeout)
            except BaseException as exc:
                self._finish(reuse=False)
                raise _after_send(exc, reading=True) from None
            if not data:
                body.eof()  # raises when the message was cut
                break
            for chunk in body.feed(data):
                yield chunk

    def _finish(self, reuse: bool) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport._release(self._pool, self._connection, reuse)

    async def aclose(self) -> None:
        body = self._body
        self._finish(body.done and not body.extra and self._head.keep_alive)


# -- which transport an adapter uses ------------------------------------------------------


def _environment_proxy(url: str) -> str | None:
    """The proxy httpx would send ``url`` through (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

    httpx's own reading of the environment, so the choice matches ``httpx.Client``'s.
    """
    try:
        from httpx._utils import URLPattern, get_environment_proxies
    except ImportError:  # pragma: no cover - another httpx: ask the standard library
        import urllib.request

        host = httpx.URL(url).host
        found = urllib.request.getproxies().get(httpx.URL(url).scheme)
        return None if not found or urllib.request.proxy_bypass(host) else found
    target = httpx.URL(url)
    # As httpx's client mounts them: the most specific pattern first; None = no proxy.
    mounts = sorted((URLPattern(key), proxy) for key, proxy in get_environment_proxies().items())
    for pattern, proxy in mounts:
        if pattern.matches(target):
            return proxy
    return None


def default_transport(
    *,
    asynchronous: bool,
    api_url: str,
    max_connections: int,
    transport: Any = None,
) -> Any:
    """The transport an adapter sends with: the merchant's, else the best one that fits.

    - ``transport`` given: that one, as it is.
    - An ``HTTP(S)_PROXY``/``ALL_PROXY`` from the environment applies to
      ``api_url``: httpx's own transport through that proxy (what
      ``httpx.Client``, with its default ``trust_env``, did before).
    - Otherwise :class:`AsyncTransport` (ASGI) or :class:`SyncTransport` (WSGI).
    """
    if transport is not None:
        return transport
    proxy = _environment_proxy(api_url)
    if proxy is not None:
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        if asynchronous:
            return httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)
        return httpx.HTTPTransport(limits=limits, proxy=proxy)
    if asynchronous:
        return AsyncTransport(max_connections=max_connections, keepalive_expiry=30.0)
    return SyncTransport(max_connections=max_connections, keepalive_expiry=30.0)
