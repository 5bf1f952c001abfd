"""A minimal local Small Transfers charge endpoint, so the benchmark measures the middleware.

Raw asyncio, HTTP/1.1 keep-alive, canned replies; no state, no checks:

- ``POST /api/v1/transactions``          -> 201 ``{"id":"t1"}``
- ``POST /api/v1/charges``               -> 201 ``{"id":"c1"}``
- ``POST /api/v1/charges/{id}/capture``  -> 200 ``{"id":"c1","status":"captured"}``
- ``GET /stats``                         -> 200, the counters of every port (JSON)
- ``GET /peak-reset``                    -> 200; ``max_pending`` (the most charges
  waiting for their delayed reply at once, per port) starts again
- ``GET /latency?ms=N``                  -> 200; from now on every charge reply (on
  every port) is sent N ms after its request arrived, like a remote Small
  Transfers (0, the default, answers at once; ``--latency-ms`` sets the start value)

It listens on several ports at once, one per server under test, and counts
per port the connections it accepted and the requests it answered: that is
how "connections opened per 1,000 charges" is measured.

    python -m bench.chargeserver [--latency-ms N] PORT [PORT ...]   # "ready" once listening
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any


def _reply(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


_TRANSACTION = _reply("201 Created", b'{"id":"t1"}')
_AUTHORIZED = _reply("201 Created", b'{"id":"c1"}')
_CAPTURED = _reply("200 OK", b'{"id":"c1","status":"captured"}')
_NOT_FOUND = _reply("404 Not Found", b'{"code":"not_found"}')


class _Stats(bytes):
    """A control reply (stats, latency): never delayed."""


class Stats:
    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.requests: Counter[str] = Counter()
        #: Requests received whose reply is not written yet, and the most at once.
        self.pending = 0
        self.max_pending = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "open": self.open,
            "pending": self.pending,
            "max_pending": self.max_pending,
            **self.requests,
        }


#: Seconds every charge reply waits (``GET /latency?ms=N``), shared by all ports.
LATENCY = [0.0]


class ChargeProtocol(asyncio.Protocol):
    __slots__ = ("_buffer", "_everything", "_stats", "_transport")

    def __init__(self, stats: Stats, everything: dict[int, Stats]) -> None:
        self._stats = stats
        self._everything = everything
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._stats.connections += 1
        self._stats.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._stats.open -= 1

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        out = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else end])
            total = end + 4 + length
            if len(buffer) < total:
                break
            line_end = head.find(b"\r\n")
            method, path, _ = head[: line_end if line_end >= 0 else end].split(b" ", 2)
            buffer = buffer[total:]
            out.append(self._answer(method, path))
        self._buffer = buffer
        if not out or self._transport is None:
            return
        reply = b"".join(out)
        delay = LATENCY[0]
        if delay <= 0 or isinstance(out[0], _Stats):
            self._transport.write(reply)
            return
        stats = self._stats
        stats.pending += len(out)
        stats.max_pending = max(stats.max_pending, stats.pending)
        asyncio.get_running_loop().call_later(delay, self._later, reply, len(out))

    def _later(self, reply: bytes, count: int) -> None:
        self._stats.pending -= count
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(reply)

    def _answer(self, method: bytes, path: bytes) -> bytes:
        requests = self._stats.requests
        if method == b"POST":
            if path == b"/api/v1/transactions":
                requests["transactions"] += 1
                return _TRANSACTION
            if path == b"/api/v1/charges":
                requests["authorizations"] += 1
                return _AUTHORIZED
            if path.startswith(b"/api/v1/charges/") and path.endswith(b"/capture"):
                requests["captures"] += 1
                return _CAPTURED
        elif path == b"/stats":
            body = json.dumps({str(p): s.as_dict() for p, s in self._everything.items()})
            return _Stats(_reply("200 OK", body.encode("ascii")))
        elif path == b"/peak-reset":
            for stats in self._everything.values():
                stats.max_pending = stats.pending
            return _Stats(_reply("200 OK", b"{}"))
        elif path.startswith(b"/latency?ms="):
            LATENCY[0] = float(path[12:]) / 1000
            for stats in self._everything.values():
                stats.max_pending = 0
            return _Stats(_reply("200 OK", b'{"latency_ms":%s}' % path[12:]))
        requests["other"] += 1
        return _NOT_FOUND


async def serve(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    everything = {port: Stats() for port in ports}
    servers = []
    for port in ports:
        stats = everything[port]
        server = await loop.create_server(
            lambda stats=stats: ChargeProtocol(stats, everything),
            "127.0.0.1",
            port,
            backlog=1024,
            reuse_address=True,
        )
        servers.append(server)
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--latency-ms"] and len(args) > 1:
        LATENCY[0] = float(args[1]) / 1000
        args = args[2:]
    ports = [int(arg) for arg in args]
    if not ports:
        raise SystemExit("usage: python -m bench.chargeserver [--latency-ms N] PORT [PORT ...]")
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(serve(ports))
    else:  # pragma: no cover - only where uvloop is installed
        uvloop.run(serve(ports))


if __name__ == "__main__":
    main()
