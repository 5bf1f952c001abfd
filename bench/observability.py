"""What the observers cost: requests through the middleware with metrics on and off.

In-process, no HTTP server in front: the WSGI app is called with an environ and
the ASGI app awaited with a scope, so the figures are the middleware's own work
plus its call to the local charge endpoint (``bench/chargeserver.py``, started
here on a free loopback port). Each round times N requests of every kind under
every variant, in an order that alternates between rounds; a ratio is taken
within a round, and the medians over rounds are reported.

Variants: ``off`` (no observers), ``prometheus`` (``observers=[prometheus()]``
on a registry of its own) and, when opentelemetry-sdk is installed, ``+otel``
(``prometheus()`` and ``opentelemetry()`` on an SDK tracer provider that keeps
every span and exports none).

Kinds: ``anonymous`` (a free page, no cookie: the fast path), ``free`` (a free
page for a signed-in visitor: the session is opened) and ``priced`` (one
transaction charged, 3000 micros).

    python -m bench.observability [--rounds 15] [--free 2000] [--priced 300]

Targets: a priced request costs < 2 % more with metrics on; a free one < 1 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI
from st_middleware.observability import opentelemetry, prometheus

from . import common

HOST = "127.0.0.1:8000"
PATHS = {"anonymous": "/", "free": "/me", "priced": "/paid"}


def _app_wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


async def _app_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"3")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok\n"})


def _observers(variant: str) -> list[Any]:
    if variant == "off":
        return []
    observers: list[Any] = [prometheus(CollectorRegistry())]
    if variant == "+otel":
        from opentelemetry.sdk.trace import TracerProvider

        observers.append(opentelemetry(TracerProvider()))
    return observers


def _variants() -> list[str]:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return ["off", "prometheus"]
    return ["off", "prometheus", "+otel"]


# -- the two drivers: N requests of one kind; (wall, CPU) seconds for all of them -------

#: Wall time, and CPU time of this thread (the one serving: the event loop for ASGI).
Run = Callable[[str, int], tuple[float, float]]


def _wsgi_runner(app: SmallTransfersWSGI, cookie: str) -> Run:
    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        assert status.startswith("200"), status
        return None

    def run(kind: str, n: int) -> tuple[float, float]:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": PATHS[kind],
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": HOST,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": None,
            "wsgi.errors": sys.stderr,
        }
        if kind != "anonymous":
            environ["HTTP_COOKIE"] = cookie
        started, cpu = time.perf_counter(), time.thread_time()
        for _ in range(n):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return time.perf_counter() - started, time.thread_time() - cpu

    return run


def _asgi_runner(app: SmallTransfersASGI, cookie: str, loop: asyncio.AbstractEventLoop) -> Run:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def many(kind: str, n: int) -> tuple[float, float]:
        headers = [(b"host", HOST.encode())]
        if kind != "anonymous":
            headers.append((b"cookie", cookie.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": PATHS[kind],
            "raw_path": PATHS[kind].encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        started, cpu = time.perf_counter(), time.thread_time()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return time.perf_counter() - started, time.thread_time() - cpu

    def run(kind: str, n: int) -> tuple[float, float]:
        return loop.run_until_complete(many(kind, n))

    return run


# -- the run -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Seconds per request, per clock ("wall", "cpu"), kind and variant: one value per round.
Times = dict[str, dict[str, dict[str, list[float]]]]
BATCHES = 10


def measure(runners: dict[str, Run], rounds: int, sizes: dict[str, int]) -> Times:
    """Each round runs every variant in turns of N/10 requests, the order rotating.

    Fine-grained turns matter on a shared machine: a neighbour's burst of work
    lands on every variant of the round alike, not on one of them.
    """
    variants = list(runners)
    times: Times = {
        clock: {kind: {v: [] for v in variants} for kind in sizes} for clock in ("wall", "cpu")
    }
    for kind, n in sizes.items():
        for run in runners.values():
            run(kind, max(50, n // 10))  # warm-up: pools, caches, metric children
    for number in range(rounds):
        for kind, n in sizes.items():
            batch = max(1, n // BATCHES)
            wall = dict.fromkeys(variants, 0.0)
            cpu = dict.fromkeys(variants, 0.0)
            gc.collect()
            for turn in range(BATCHES):
                shift = (number + turn) % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    took, used = runners[variant](kind, batch)
                    wall[variant] += took
                    cpu[variant] += used
            for variant in variants:
                times["wall"][kind][variant].append(wall[variant] / (batch * BATCHES))
                times["cpu"][kind][variant].append(cpu[variant] / (batch * BATCHES))
    return times


def report(adapter: str, times: Times) -> list[str]:
    lines = []
    for clock, by_kind in times.items():
        for kind, by_variant in by_kind.items():
            off = by_variant["off"]
            cells = [f"off {statistics.median(off) * 1e6:7.2f} µs"]
            for variant, values in by_variant.items():
                if variant == "off":
                    continue
                pairs = list(zip(values, off, strict=True))
                ratio = statistics.median(v / o for v, o in pairs)
                extra = statistics.median(v - o for v, o in pairs) * 1e6
                cells.append(
                    f"{variant} {statistics.median(values) * 1e6:7.2f} µs "
                    f"(x{ratio:.4f}, {extra:+.2f} µs)"
                )
            lines.append(f"{adapter:4} {clock:4} {kind:9} " + " | ".join(cells))
    return lines


async def _close_asgi(apps: Iterable[SmallTransfersASGI]) -> None:
    for app in apps:
        await app.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.observability", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--free", type=int, default=2000, help="requests per round, free kinds")
    parser.add_argument("--priced", type=int, default=300, help="requests per round, priced")
    args = parser.parse_args(argv)
    sizes = {"anonymous": args.free, "free": args.free, "priced": args.priced}

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.chargeserver", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the charge endpoint did not start")
        options = common.middleware_options(f"http://127.0.0.1:{port}")
        cookie = common.cookie_header(HOST)
        variants = _variants()
        lines = []

        wsgi = {
            v: SmallTransfersWSGI(_app_wsgi, observers=_observers(v), **options) for v in variants
        }
        try:
            runners = {v: _wsgi_runner(app, cookie) for v, app in wsgi.items()}
            lines += report("wsgi", measure(runners, args.rounds, sizes))
        finally:
            for app in wsgi.values():
                app.close()

        loop = asyncio.new_event_loop()
        asgi = {
            v: SmallTransfersASGI(_app_asgi, observers=_observers(v), **options) for v in variants
        }
        try:
            runners = {v: _asgi_runner(app, cookie, loop) for v, app in asgi.items()}
            lines += report("asgi", measure(runners, args.rounds, sizes))
        finally:
            loop.run_until_complete(_close_asgi(asgi.values()))
            loop.close()
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(
        f"per request, median of {args.rounds} rounds (variants in turns of N/{BATCHES}); "
        "(x ratio, + extra) against off in the same round; cpu = the serving thread's"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
