"""The HTTP clients alone: CPU per charge POST to the local charge endpoint, in this process.

    python -m bench.clients [--requests N] [--in-flight K ...]

Each candidate sends the middleware's charge request (an ``httpx.Request`` as
``_api._post`` builds it, except for clients that take none) to
:mod:`bench.chargeserver` (answering at once, on core 1) and reads the reply;
CPU = this process's ``time.process_time()`` per request (core 0), with 1 and
with 8 threads (sync) or K requests in flight (async). Candidates whose package
is not installed are skipped. This is how the built-in transports were chosen;
the servers' figures are in scenario 3 of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from st_middleware import _api
from st_middleware._transport import AsyncTransport, SyncTransport

from . import common
from .runner import CLIENT_CORE, ROOT, free_port

PATH = "/api/v1/transactions"


def _request(port: int) -> httpx.Request:
    settings = common.settings(f"http://127.0.0.1:{port}")
    payload = {"accessToken": common.ACCESS_TOKEN, "amountMicros": common.PRICE}
    return _api._post(settings, "/transactions", payload, _api.new_idempotency_key())


def _read(response: httpx.Response) -> None:
    try:
        for _ in response.iter_bytes():
            pass
    finally:
        response.close()
    if response.status_code != 201:
        raise RuntimeError(f"unexpected answer {response.status_code}")


async def _aread(response: httpx.Response) -> None:
    try:
        async for _ in response.aiter_bytes():
            pass
    finally:
        await response.aclose()
    if response.status_code != 201:
        raise RuntimeError(f"unexpected answer {response.status_code}")


def sync_candidates(port: int) -> dict[str, Callable[[], None]]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    found: dict[str, Callable[[], None]] = {}
    client = httpx.Client(limits=limits)
    found["httpx.Client.send (httpcore)"] = lambda: _read(client.send(_request(port), stream=True))
    pool = httpx.HTTPTransport(limits=limits)
    found["httpx.HTTPTransport, called directly"] = lambda: _read(
        pool.handle_request(_request(port))
    )
    ours = SyncTransport()
    found["built-in SyncTransport, called directly"] = lambda: _read(
        ours.handle_request(_request(port))
    )
    from .transports import ThreadLocalHTTPTransport

    local = ThreadLocalHTTPTransport()
    found["thread-local http.client (bench/transports.py)"] = lambda: _read(
        local.handle_request(_request(port))
    )
    try:
        import urllib3
    except ImportError:
        pass
    else:
        u3 = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=64, retries=False)

        def with_urllib3() -> None:
            request = _request(port)
            reply = u3.urlopen(
                "POST",
                PATH,
                body=request.content,
                headers=dict(request.headers),
                preload_content=False,
                retries=False,
            )
            reply.read()
            reply.release_conn()

        found["urllib3 pool (no httpx.Response)"] = with_urllib3
    try:
        import pycurl
    except ImportError:
        pass
    else:
        curls = threading.local()

        def with_pycurl() -> None:
            request = _request(port)
            curl = getattr(curls, "curl", None)
            if curl is None:
                curl = curls.curl = pycurl.Curl()
            sink = io.BytesIO()
            curl.setopt(pycurl.URL, str(request.url))
            curl.setopt(pycurl.POSTFIELDS, request.content)
            curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in request.headers.items()])
            curl.setopt(pycurl.WRITEDATA, sink)
            curl.perform()

        found["pycurl, one handle per thread (no httpx.Response)"] = with_pycurl
    try:
        from pyreqwest.client import SyncClientBuilder
    except ImportError:
        pass
    else:
        reqwest = SyncClientBuilder().build()

        def with_pyreqwest() -> None:
            request = _request(port)
            builder = reqwest.post(str(request.url)).body_bytes(request.content)
            builder.headers(dict(request.headers)).build().send().bytes()

        found["pyreqwest (Rust, no httpx.Response)"] = with_pyreqwest
    return found


def async_candidates(port: int, k: int) -> dict[str, Callable[[], Awaitable[None]]]:
    limits = httpx.Limits(max_connections=k, max_keepalive_connections=k)
    found: dict[str, Callable[[], Awaitable[None]]] = {}
    client = httpx.AsyncClient(limits=limits)

    async def with_client() -> None:
        await _aread(await client.send(_request(port), stream=True))

    found["httpx.AsyncClient.send (httpcore)"] = with_client
    pool = httpx.AsyncHTTPTransport(limits=limits)

    async def with_pool() -> None:
        await _aread(await pool.handle_async_request(_request(port)))

    found["httpx.AsyncHTTPTransport, called directly"] = with_pool
    ours = AsyncTransport()

    async def with_ours() -> None:
        await _aread(await ours.handle_async_request(_request(port)))

    found["built-in AsyncTransport, called directly"] = with_ours
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        pass
    else:
        aio = AiohttpTransport(limits=limits)

        async def with_aiohttp() -> None:
            await _aread(await aio.handle_async_request(_request(port)))

        found["httpx-aiohttp AiohttpTransport, called directly"] = with_aiohttp
    try:
        from pyreqwest.client import ClientBuilder
    except ImportError:
        pass
    else:
        reqwest: Any = None

        async def with_pyreqwest() -> None:
            nonlocal reqwest
            if reqwest is None:
                reqwest = await ClientBuilder().build().__aenter__()
            request = _request(port)
            builder = reqwest.post(str(request.url)).body_bytes(request.content)
            await (await builder.headers(dict(request.headers)).build().send()).bytes()

        found["pyreqwest async (Rust, no httpx.Response)"] = with_pyreqwest
    return found


def cpu_sync(call: Callable[[], None], requests: int, threads: int) -> float:
    for _ in range(100):
        call()
    each = requests // threads

    def work() -> None:
        for _ in range(each):
            call()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.process_time() - start) / (each * threads) * 1e6


async def cpu_async(call: Callable[[], Awaitable[None]], requests: int, k: int) -> float:
    gate = asyncio.Semaphore(k)

    async def one() -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one() for _ in range(200)))
    start = time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    return (time.process_time() - start) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="per measurement (3000)")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 32], help="async (1 32)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8], help="sync (1 8)")
    args = parser.parse_args(argv)
    port = free_port()
    endpoint = subprocess.Popen(
        ["taskset", "-c", CLIENT_CORE, sys.executable, "-m", "bench.chargeserver", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert endpoint.stdout is not None
        endpoint.stdout.readline()  # "ready"
        os.sched_setaffinity(0, {0})
        print("| client alone | mode | CPU us per charge POST |")
        print("|---|---|---|")
        for name, call in sync_candidates(port).items():
            for threads in args.threads:
                us = cpu_sync(call, args.requests, threads)
                print(f"| {name} | sync, {threads} thread(s) | {us:.0f} |", flush=True)
        for k in args.in_flight:

            async def run(k: int = k) -> None:
                for name, call in async_candidates(port, k).items():
                    us = await cpu_async(call, args.requests, k)
                    print(f"| {name} | async, {k} in flight | {us:.0f} |", flush=True)

            asyncio.run(run())
    finally:
        endpoint.terminate()
        endpoint.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
