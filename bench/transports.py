"""A faster sync transport to measure side by side with httpx's own (WSGI).

``ThreadLocalHTTPTransport`` keeps one ``http.client`` connection per thread
and origin: no pool, no lock, no per-request connection bookkeeping, which is
all a WSGI worker thread needs (it sends one call at a time). It plugs into
the middleware through ``transport=`` like any ``httpx.BaseTransport``.

Errors are mapped so that the middleware's money rule still holds: only a
failure to *connect* becomes ``httpx.ConnectError`` (retried once); anything
after the request was written is a ``ReadError``/``ReadTimeout`` (never resent).
A kept-alive connection the server has closed is noticed before reuse (the
socket reads as ready) and replaced, as httpcore does.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading

import httpx

__all__ = ["ThreadLocalHTTPTransport"]


class ThreadLocalHTTPTransport(httpx.BaseTransport):
    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(
        self, url: httpx.URL, timeouts: dict[str, float | None]
    ) -> tuple[http.client.HTTPConnection, bool]:
        connections: dict[tuple[str, str, int | None], http.client.HTTPConnection]
        connections = self._local.__dict__.setdefault("connections", {})
        key = (url.scheme, url.host, url.port)
        connection = connections.get(key)
        if connection is not None:
            sock = connection.sock
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return connection, True
            connection.close()  # closed by the server while idle (or never opened)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connect = timeouts.get("connect") or self._timeout
        connection = kind(url.host, url.port, timeout=connect)
        try:
            connection.connect()
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        assert connection.sock is not None
        connection.sock.settimeout(timeouts.get("read") or self._timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections[key] = connection
        with self._lock:
            self._all.append(connection)
        return connection, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        connection, _ = self._connection(url, request.extensions.get("timeout", {}))
        body = request.read()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        target = url.raw_path.decode("ascii")
        try:
            connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(body or None)
            reply = connection.getresponse()
            content = reply.read()
        except TimeoutError as exc:
            connection.close()
            raise httpx.ReadTimeout(str(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise httpx.ReadError(str(exc)) from exc
        if reply.will_close:
            connection.close()
        return httpx.Response(reply.status, headers=reply.getheaders(), content=content)

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                connection.close()
            self._all.clear()
