"""The apps under test: one small app, served bare, wrapped, or behind a "floor" middleware.

Servers load them through factories that read the environment:

- ``BENCH_VARIANT``: ``bare`` (no middleware), ``wrapped`` (the real
  middleware, default options), ``floor`` (the least any such middleware must
  do: find the cookie with a split, decrypt it, decode it; on a priced path one
  POST through a tuned, shared httpx client), ``t-NAME`` (the real middleware
  with another transport through ``transport=``: ``t-httpx``, httpx's own
  pool; ``t-aiohttp`` (ASGI), ``httpx-aiohttp``; ``t-threadlocal`` (WSGI), a
  thread-local ``http.client`` transport, see :mod:`bench.transports`).
  ``s-NAME`` (the real middleware with ``store=BENCH_STORE``: ``s-sqlite``,
  ``s-redis``; ``wrapped`` itself has the default ``memory://`` store),
  ``o-prometheus`` (the real middleware with ``observers=[prometheus()]``).
  ``candidate`` is ``wrapped`` loaded from another source tree (``PYTHONPATH``),
  to measure a proposed change of the middleware side by side. ASGI only:
  ``starlette-bare``, ``starlette-wrapped``, ``starlette-candidate``, the same
  around a Starlette app (scenario 1).
- ``BENCH_CHARGE_URL``: where the (minimal, local) charge endpoint listens.

    gunicorn 'bench.apps:make_wsgi()'      uvicorn --factory bench.apps:make_asgi
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

import httpx
from cryptography.fernet import Fernet, InvalidToken

from st_middleware import Customer, Price, SmallTransfersASGI, SmallTransfersWSGI
from st_middleware._session import derive_key

from . import common

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_TEXT = [("Content-Type", "text/plain")]
_ATEXT = [(b"content-type", b"text/plain")]


def _body_for(path: str, customer: Customer | None) -> bytes:
    if path == "/me":
        return f"hello {customer.first_name if customer else 'stranger'}\n".encode()
    if path == "/paid":
        return b"the paid content\n"
    return b"hello world\n"


# -- the app, WSGI --------------------------------------------------------------------


def _stream() -> Iterator[bytes]:
    yield b"first chunk\n"
    for n in range(1, common.STREAM_CHUNKS):
        time.sleep(common.STREAM_GAP)
        yield b"chunk %d\n" % n


def hello_wsgi(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/stream":
        start_response("200 OK", _TEXT)
        return _stream()
    if path == "/ac":
        start_response("200 OK", _TEXT)
        return iter((b"part one\n", b"part two\n"))
    body = _body_for(path, environ.get("smalltransfers.customer"))
    start_response("200 OK", [*_TEXT, ("Content-Length", str(len(body)))])
    return [body]


# -- the app, ASGI --------------------------------------------------------------------


async def hello_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path in ("/stream", "/ac"):
        await send({"type": "http.response.start", "status": 200, "headers": _ATEXT})
        if path == "/ac":
            await send({"type": "http.response.body", "body": b"part one\n", "more_body": True})
            await send({"type": "http.response.body", "body": b"part two\n"})
            return
        await send({"type": "http.response.body", "body": b"first chunk\n", "more_body": True})
        for n in range(1, common.STREAM_CHUNKS):
            await asyncio.sleep(common.STREAM_GAP)
            last = n == common.STREAM_CHUNKS - 1
            await send(
                {"type": "http.response.body", "body": b"chunk %d\n" % n, "more_body": not last}
            )
        return
    body = _body_for(path, scope.get("smalltransfers.customer"))
    headers = [*_ATEXT, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the floor: what any cookie-session + charge middleware has to do -------------------


class _FloorBase:
    """Split, decrypt, decode; the charge payload. Keys and clients built once."""

    def __init__(self, charge_url: str) -> None:
        self.fernet = Fernet(derive_key(common.SESSION_SECRET, "session"))
        self.api = charge_url + "/api/v1"
        self.prices: dict[str, tuple[int, str]] = {}
        for path, price in common.PRICING.items():
            if isinstance(price, Price):
                self.prices[path] = (price.micros, price.mode or "transaction")
            else:
                self.prices[path] = (price, "transaction")

    def session(self, header: str) -> tuple[str, Customer] | None:
        if common.COOKIE_NAME not in header:
            return None
        for part in header.split(";"):
            name, _, value = part.partition("=")
            if name.strip() == common.COOKIE_NAME:
                try:
                    plain = self.fernet.decrypt(value.strip().encode(), ttl=common.SESSION_MAX_AGE)
                except InvalidToken:
                    return None
                data = json.loads(plain)["d"]
                return data["t"], Customer(*data["c"])
        return None

    def payload(self, token: str, micros: int) -> dict[str, Any]:
        return {
            "publishableKey": common.PUBLISHABLE_KEY,
            "secretKey": common.SECRET_KEY,
            "accessToken": token,
            "amountMicros": micros,
        }

    def charge_request(self, token: str, micros: int, mode: str) -> tuple[str, dict[str, Any]]:
        if mode == "transaction":
            return self.api + "/transactions", self.payload(token, micros)
        return self.api + "/charges", {**self.payload(token, micros), "currency": "usd"}


_HEADERS = {"Accept": "application/json", "User-Agent": "bench-floor"}


class FloorWSGI(_FloorBase):
    def __init__(self, app: Any, charge_url: str) -> None:
        super().__init__(charge_url)
        self.app = app
        # Tuned: a pool as big as gunicorn's threads, no per-request client.
        self.client = httpx.Client(
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            timeout=httpx.Timeout(10.0, connect=5.0),
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        found = self.session(environ.get("HTTP_COOKIE", ""))
        environ["smalltransfers.customer"] = found[1] if found else None
        price = self.prices.get(environ["PATH_INFO"])
        if price is None:
            return self.app(environ, start_response)
        if found is None:
            start_response("401 Unauthorized", _TEXT)
            return [b"sign in\n"]
        url, payload = self.charge_request(found[0], *price)
        headers = {**_HEADERS, "Idempotency-Key": str(uuid.uuid4())}
        reply = self.client.post(url, json=payload, headers=headers)
        if reply.status_code != 201:
            start_response("503 Service Unavailable", _TEXT)
            return [b"charge failed\n"]
        charge_id = reply.json()["id"]
        if price[1] == "transaction":
            return self.app(environ, start_response)
        body = self.app(environ, start_response)
        return _CaptureAfter(body, lambda: self._capture(found[0], charge_id, price[0]))

    def _capture(self, token: str, charge_id: str, micros: int) -> None:
        url = f"{self.api}/charges/{charge_id}/capture"
        headers = {**_HEADERS, "Idempotency-Key": str(uuid.uuid4())}
        self.client.post(url, json=self.payload(token, micros), headers=headers)


class _CaptureAfter:
    def __init__(self, body: Iterable[bytes], then: Callable[[], None]) -> None:
        self.body, self.then = body, then

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
        self.then()


class FloorASGI(_FloorBase):
    def __init__(self, app: Any, charge_url: str) -> None:
        super().__init__(charge_url)
        self.app = app
        self._client: httpx.AsyncClient | None = None
        self._gate: asyncio.Semaphore | None = None

    def _pool(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        if self._client is None or self._gate is None:
            # Tuned: a small pool, and a semaphore so httpcore's own queue stays short.
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
                timeout=httpx.Timeout(10.0, connect=5.0),
            )
            self._gate = asyncio.Semaphore(4)
        return self._client, self._gate

    async def _post(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        client, gate = self._pool()
        headers = {**_HEADERS, "Idempotency-Key": str(uuid.uuid4())}
        async with gate:
            return await client.post(url, json=payload, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope["headers"]:
            if name == b"cookie":
                header = value.decode("latin-1")
                break
        found = self.session(header)
        scope["smalltransfers.customer"] = found[1] if found else None
        price = self.prices.get(scope["path"])
        if price is None:
            await self.app(scope, receive, send)
            return
        if found is None:
            await _plain(send, 401, b"sign in\n")
            return
        url, payload = self.charge_request(found[0], *price)
        reply = await self._post(url, payload)
        if reply.status_code != 201:
            await _plain(send, 503, b"charge failed\n")
            return
        charge_id = reply.json()["id"]
        await self.app(scope, receive, send)
        if price[1] != "transaction":
            capture = f"{self.api}/charges/{charge_id}/capture"
            await self._post(capture, self.payload(found[0], price[0]))


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _ATEXT})
    await send({"type": "http.response.body", "body": body})


# -- factories --------------------------------------------------------------------------


def _config() -> tuple[str, str]:
    import st_middleware

    variant = os.environ.get("BENCH_VARIANT", "bare")
    charge_url = os.environ.get("BENCH_CHARGE_URL", "http://127.0.0.1:9")
    # The runner checks this line: a "candidate" must load the package from elsewhere.
    print(f"bench app: {variant} with {st_middleware.__file__}", file=sys.stderr, flush=True)
    # A candidate is the real middleware, from the source tree on PYTHONPATH.
    return variant.replace("candidate", "wrapped"), charge_url


def _options(charge_url: str) -> dict[str, Any]:
    """The middleware's keywords, plus ``BENCH_OPTIONS`` (JSON) for experiments."""
    return {
        **common.middleware_options(charge_url),
        **json.loads(os.environ.get("BENCH_OPTIONS") or "{}"),
    }


#: Transports measured through the ``transport=`` option (variant ``t-NAME``), per adapter.
TRANSPORTS = {
    "wsgi": ("httpx", "threadlocal"),
    "asgi": ("httpx", "aiohttp"),
}
_LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=30)


def _wrapped_options(variant: str, charge_url: str, transport: Callable[[str], Any]) -> Any:
    """The keywords of a wrapped variant: ``wrapped``, ``t-NAME``, ``s-NAME``, ``o-prometheus``."""
    options = _options(charge_url)
    if variant.startswith("t-"):
        options["transport"] = transport(variant[2:])
    elif variant.startswith("s-"):
        options["store"] = os.environ["BENCH_STORE"]
    elif variant == "o-prometheus":
        from st_middleware.observability import prometheus

        options["observers"] = [prometheus()]
    elif variant != "wrapped":
        raise SystemExit(f"unknown BENCH_VARIANT {variant!r}")
    return options


def wsgi_transport(name: str) -> httpx.BaseTransport:
    if name == "httpx":  # httpx's own (httpcore) pool, sized not to throttle
        return httpx.HTTPTransport(limits=_LIMITS)
    if name == "threadlocal":
        from .transports import ThreadLocalHTTPTransport

        return ThreadLocalHTTPTransport()
    raise SystemExit(f"unknown WSGI transport {name!r}")


def asgi_transport(name: str) -> httpx.AsyncBaseTransport:
    if name == "httpx":
        return httpx.AsyncHTTPTransport(limits=_LIMITS)
    if name == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=_LIMITS)
    raise SystemExit(f"unknown ASGI transport {name!r}")


def make_wsgi() -> Any:
    variant, charge_url = _config()
    if variant == "bare":
        return hello_wsgi
    if variant == "floor":
        return FloorWSGI(hello_wsgi, charge_url)
    options = _wrapped_options(variant, charge_url, wsgi_transport)
    return SmallTransfersWSGI(hello_wsgi, **options)


def starlette_app() -> Any:
    """The same answers from a Starlette app (a router, a Request, a Response per request)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def page(request: Any) -> Any:
        return PlainTextResponse(
            _body_for(request.url.path, request.scope.get("smalltransfers.customer"))
        )

    return Starlette(routes=[Route("/{path:path}", page)])


def make_asgi() -> Any:
    variant, charge_url = _config()
    app: Any = hello_asgi
    if variant.startswith("starlette-"):
        app, variant = starlette_app(), variant.removeprefix("starlette-")
    if variant == "bare":
        return app
    if variant == "floor":
        return FloorASGI(app, charge_url)
    options = _wrapped_options(variant, charge_url, asgi_transport)
    return SmallTransfersASGI(app, **options)
