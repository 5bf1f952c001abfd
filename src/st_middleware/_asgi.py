"""The ASGI adapter: translates scope/messages <-> the core, one pooled client per event loop."""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any, TypeVar

import httpx

from . import api
from ._base import BaseMiddleware
from .answers import Answer
from .config import check_transport
from .core import Call, Forward, NeedsPrice, Respond
from .request import Request, forwarded_origin

__all__ = ["SmallTransfersASGI"]

log = logging.getLogger("st_middleware")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")


class SmallTransfersASGI(BaseMiddleware[ASGIApp]):
    """Wrap an ASGI app: sign-in routes, session cookie, and a charge per priced request.

    Same keywords as :class:`~st_middleware.SmallTransfersWSGI`; ``pricing``
    may also be an ``async`` function. The app finds
    ``scope["smalltransfers.customer"]`` and ``scope["smalltransfers.charge"]``
    on every HTTP request; lifespan and websocket scopes pass through.
    """

    def _setup(self) -> None:
        check_transport(self.settings.transport, httpx.AsyncBaseTransport, "SmallTransfersASGI")
        self._client_kwargs = self._client_options()
        # httpx clients belong to the loop that made them: one per running loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def aclose(self) -> None:
        """Close this event loop's pooled connections to Small Transfers."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # -- the request --------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                receive = self._lifespan_receive(receive)
            await self.app(scope, receive, send)
            return
        cookie = _cookie_header(scope)
        if not scope.get("root_path") and self._core.plainly_free(
            scope.get("method", "GET"), scope["path"] or "/", cookie
        ):
            scope["smalltransfers.customer"] = None
            scope["smalltransfers.charge"] = None
            await self.app(scope, receive, send)
            return
        request = self._request(scope, cookie)
        core = self._core
        step = core.begin(request)
        if isinstance(step, NeedsPrice):
            try:
                raw: object = step.price_of(request)
                if raw is not None and type(raw) is not int and inspect.isawaitable(raw):
                    raw = await raw
            except Exception as exc:
                raw = exc
            step = core.priced(step, raw)
        if isinstance(step, Call):
            step = await self._drive(step.flow)
        if isinstance(step, Respond):
            await _respond(step.answer, send)
            return
        assert isinstance(step, Forward)
        scope["smalltransfers.customer"] = step.customer
        scope["smalltransfers.charge"] = step.charge
        if not step.set_cookies and step.capture is None:
            await self.app(scope, receive, send)
            return
        await self._forward(step, scope, receive, send)

    def _request(self, scope: Scope, cookie: str) -> Request:
        host = accept = ""
        forwarded_proto = forwarded_host = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            # Repeated lines are joined, as WSGI servers do, so both adapters agree.
            elif name == b"x-forwarded-proto":
                forwarded_proto = _joined(forwarded_proto, value)
            elif name == b"x-forwarded-host":
                forwarded_host = _joined(forwarded_host, value)
        if not host:
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else ""
        scheme = scope.get("scheme", "http")
        client_addr = scope.get("client")
        client = client_addr[0] if client_addr else None
        trusted = self.settings.trusted_proxies
        if trusted:
            scheme, host = forwarded_origin(
                scheme, host, client, trusted, forwarded_proto, forwarded_host
            )
        root_path = scope.get("root_path", "")
        path = scope["path"]
        # ASGI servers put the mount prefix in `path` too: the app's own path is what follows.
        if root_path and (path == root_path or path.startswith(root_path + "/")):
            path = path[len(root_path) :]
        return Request(
            method=scope.get("method", "GET"),
            scheme=scheme,
            host=host,
            path=path,
            root_path=root_path,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            cookie=cookie,
            accept=accept,
            client=client,
            headers=lambda: _headers(scope),
        )

    async def _forward(self, step: Forward, scope: Scope, receive: Receive, send: Send) -> None:
        extra = [(b"set-cookie", cookie.encode("latin-1")) for cookie in step.set_cookies]
        status: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if extra:
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        if step.capture is None:
            await self.app(scope, receive, send_wrapper)
            return
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            # The app raised (a visitor's hang-up it let through included): nothing is owed.
            await self._capture(step, status, failed=True)
            raise
        await self._capture(step, status, failed=False)

    async def _capture(self, step: Forward, status: int | None, failed: bool) -> None:
        flow = self._core.capture(step, status, failed)
        if flow is None:
            return
        try:
            await self._drive(flow)
        except Exception:
            # The response is already out: a capture problem is logged, never raised.
            log.exception("capture could not be sent")

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return lifespan_receive

    # -- calls to Small Transfers ----------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(**self._client_kwargs)
        return client

    async def _drive(self, flow: Generator[httpx.Request, api.Reply, T]) -> T:
        """Run a flow of :mod:`.api` to its end with this loop's pooled client."""
        client = self._client()
        try:
            request = next(flow)
            while True:
                try:
                    reply = await self._send(client, request)
                except httpx.HTTPError as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(reply)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            # Waiting here is O(1); waiting in httpcore's pool queue costs
            # O(waiting requests) of bookkeeping for every request.
            gate = self._gates[loop] = asyncio.Semaphore(self.settings.max_connections)
        return gate

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> api.Reply:
        gate = self._gate()
        if gate.locked():
            try:
                await asyncio.wait_for(gate.acquire(), self.settings.timeout)
            except asyncio.TimeoutError:
                # Nothing was sent: the flow may retry, like httpx's own pool timeout.
                raise httpx.PoolTimeout("no connection to Small Transfers was free") from None
        else:
            await gate.acquire()
        try:
            response = await client.send(request, stream=True)
            try:
                collector = api.BodyCollector(self.settings.timeout)
                async for chunk in response.aiter_bytes():
                    if not collector.feed(chunk):
                        break
                return collector.reply(response.status_code)
            finally:
                await response.aclose()
        finally:
            gate.release()


async def _respond(answer: Answer, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in answer.headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


def _cookie_header(scope: Scope) -> str:
    """Every ``Cookie`` line of the request, joined (HTTP/2 may send several)."""
    found = [value.decode("latin-1") for name, value in scope["headers"] if name == b"cookie"]
    return "; ".join(found)


def _joined(previous: str | None, value: bytes) -> str:
    text = value.decode("latin-1")
    return f"{previous}, {text}" if previous else text


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers
