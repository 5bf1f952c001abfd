"""The ASGI adapter: scope/messages <-> the core, and the async driver of its flows."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar, cast

import httpx

from ._answers import Answer
from ._api import BodyCollector
from ._base import BaseMiddleware
from ._config import check_transport
from ._core import Forward, Respond
from ._effects import AskPricing, Flow, ReadBody, Reply, Run, Send, StoreCall
from ._request import Request, forwarded_origin
from ._transport import default_transport
from ._values import CHARGE, CUSTOMER

__all__ = ["SmallTransfersASGI"]

log = logging.getLogger("st_middleware")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
ASGISend = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, ASGISend], Awaitable[None]]
T = TypeVar("T")


class SmallTransfersASGI(BaseMiddleware[ASGIApp]):
    """Wrap an ASGI app: sign-in routes, session cookie, and a charge per priced request.

    Same keywords as :class:`~st_middleware.SmallTransfersWSGI`; ``pricing``
    may also be an ``async`` function. The app finds
    ``scope["smalltransfers.customer"]`` and ``scope["smalltransfers.charge"]``
    on every HTTP and websocket request (in a copy of the scope); lifespan
    scopes pass through.
    """

    def _setup(self) -> None:
        check_transport(self.settings.transport, httpx.AsyncBaseTransport, "SmallTransfersASGI")
        # Requests go to the transport directly: httpx.AsyncClient's cookie, auth,
        # redirect and hook work is not needed (each request carries its timeouts, see
        # _api._post). The built-in transport keeps one pool per event loop, grown to
        # the charges in flight; each loop's client only owns (and closes) its share.
        self._transport: httpx.AsyncBaseTransport = default_transport(
            asynchronous=True, **self._client_options()
        )
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._handlers: dict[type[Any], Callable[[Any], Awaitable[Any]]] = {
            Send: self._send,
            AskPricing: self._ask_pricing,
            StoreCall: self._store_call,
            ReadBody: self._read_body,
        }
        # The capture worker: one task per running loop, started at its first request.
        self._workers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )

    async def aclose(self) -> None:
        """Stop this loop's capture worker (one last try), then close its connections."""
        await self._stop_captures()
        await self._stores.aio.aclose()  # this loop's connections to the store
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()  # closes this loop's connections (the transport's aclose)

    # -- the request --------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: ASGISend) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            if kind == "lifespan":
                receive = self._lifespan_receive(receive)
            await self.app(scope, receive, send)
            return
        if asyncio.get_running_loop() not in self._workers:
            self._start_captures()
        cookie, authorization = "", False
        for name, _ in scope["headers"]:
            if name == b"cookie":  # most anonymous requests carry none: no list, no join
                if not cookie:
                    cookie = _cookie_header(scope)
            elif name == b"authorization":  # a program's bearer token: take the flow
                authorization = True
        if (
            not authorization
            and not scope.get("root_path")
            and self._core.plainly_free(scope.get("method", "GET"), scope["path"] or "/", cookie)
        ):
            await self.app({**scope, CUSTOMER: None, CHARGE: None}, receive, send)
            return
        decision = await self._run(self._core.handle(self._request(scope, cookie, receive)))
        if isinstance(decision, Respond):
            if kind == "websocket":
                await _refuse_websocket(decision.answer, scope, receive, send)
            else:
                await _answer(decision.answer, send)
            return
        scope = {**scope, CUSTOMER: decision.customer, CHARGE: decision.charge}
        if decision.plain:
            await self.app(scope, receive, send)
            return
        await self._forward(decision, scope, receive, send)

    def _request(self, scope: Scope, cookie: str, receive: Receive) -> Request:
        host = accept = authorization = ""
        forwarded_proto = forwarded_host = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            # Repeated lines are joined, as WSGI servers do, so both adapters agree.
            elif name == b"x-forwarded-proto":
                forwarded_proto = _joined(forwarded_proto, value)
            elif name == b"x-forwarded-host":
                forwarded_host = _joined(forwarded_host, value)
        if not host:
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else ""
        scheme = _SCHEMES.get(scope.get("scheme", "http"), "http")
        peer = scope.get("client")
        client = peer[0] if peer else None
        if self.settings.trusted_proxies:
            scheme, host = forwarded_origin(
                scheme,
                host,
                client,
                self.settings.trusted_proxies,
                forwarded_proto,
                forwarded_host,
            )
        root_path = scope.get("root_path", "").rstrip("/")
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
            authorization=authorization,
            client=client,
            headers=lambda: _headers(scope),
            body_source=receive,
            websocket=scope["type"] == "websocket",
        )

    async def _forward(
        self, forward: Forward, scope: Scope, receive: Receive, send: ASGISend
    ) -> None:
        progress = _Progress()

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind in _STARTS:
                progress.status = message.get("status", 101)
                message = {**message, "headers": _response_headers(forward, message)}
            elif kind == "websocket.close" and progress.status is None:
                progress.status = 403  # refused by the app before accepting
            await send(message)
            if forward.capture is not None and kind in _BODIES and not message.get("more_body"):
                # The visitor has the whole answer: capture now, not after the
                # app's background tasks, which may take long or fail.
                progress.complete = True
                await self._after(forward, progress.status, failed=False)

        if forward.capture is None:
            await self.app(scope, receive, send_wrapper)
            return
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            if progress.complete:
                log.warning("the app raised after its response was complete; the capture stands")
            else:
                # The app raised (a visitor's hang-up it let through included): nothing is owed.
                await self._after(forward, progress.status, failed=True)
            raise
        if not progress.complete:
            # A websocket that ended, or an app that returned without a final body.
            await self._after(forward, progress.status, failed=False)

    async def _after(self, forward: Forward, status: int | None, failed: bool) -> None:
        flow = self._core.after_response(forward, status, failed)
        if flow is None:
            return
        try:
            await self._run(flow)
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

    # -- the state store and the capture worker (retries the outbox) ---------------

    @staticmethod
    async def _read_body(effect: ReadBody) -> bytes:
        receive: Any = effect.request.body_source
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # a disconnect (or a websocket's connect): nothing more to read
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= effect.limit:
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)[: effect.limit]

    async def _store_call(self, effect: StoreCall) -> Any:
        return await getattr(self._stores.aio, effect.method)(*effect.args)

    def _start_captures(self) -> None:
        loop = asyncio.get_running_loop()
        # A context of its own: the worker must not run inside the first request's
        # (its trace span, its contextvars), or every retry would show up under it.
        worker = contextvars.Context().run(
            loop.create_task, self._capture_worker(), name="st-captures"
        )
        self._workers[loop] = worker

    async def _capture_worker(self) -> None:
        wait = 0.0
        while True:
            await asyncio.sleep(wait)
            try:
                wait = await self._run(self._core.capture_round())
            except Exception:
                log.exception("capture worker round failed")
                wait = 5.0

    async def _stop_captures(self) -> None:
        worker = self._workers.pop(asyncio.get_running_loop(), None)
        if worker is None:
            return
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        try:
            await self._run(self._core.capture_round(final=True))  # one last try
        except Exception:
            log.exception("the last capture round failed")

    # -- the driver: carries out what a flow asks for ------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        run = Run(flow)
        for effect in run:
            try:
                run.result = await self._handlers[type(effect)](effect)
            except BaseException as exc:
                run.error = exc
        return run.value

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(
                transport=self._transport, trust_env=False
            )
        return client

    async def _send(self, effect: Send) -> Reply:
        self._client()  # this loop's owner of the connections, made at its first call
        response = await self._transport.handle_async_request(effect.request)
        try:
            collector = BodyCollector(self.settings.timeout)
            # The raw bytes: our requests ask for no content coding (see _api._post).
            async for chunk in cast("httpx.AsyncByteStream", response.stream):
                if not collector.feed(chunk):
                    break
            return collector.reply(response.status_code)
        finally:
            await response.aclose()

    @staticmethod
    async def _ask_pricing(effect: AskPricing) -> object:
        raw = effect.rule.ask(effect.request)
        if raw is not None and type(raw) is not int and inspect.isawaitable(raw):
            raw = await raw
        return raw


class _Progress:
    """How far the app got with its answer (per request, never on the middleware)."""

    __slots__ = ("complete", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.complete = False


# Messages that start an answer (101 for an accepted websocket), and that carry its body.
_STARTS = frozenset({"http.response.start", "websocket.accept", "websocket.http.response.start"})
_BODIES = frozenset({"http.response.body", "http.response.pathsend"})
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


async def _answer(answer: Answer, send: ASGISend) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": _raw(answer)})
    await send({"type": "http.response.body", "body": answer.body})


async def _refuse_websocket(answer: Answer, scope: Scope, receive: Receive, send: ASGISend) -> None:
    """Refuse a websocket handshake with our answer, before the app sees it.

    With the ``websocket.http.response`` extension the client gets the real
    status (401, 402...) and body; without it, a close with 1008 (policy).
    """
    if (await receive())["type"] != "websocket.connect":
        return  # the client left already
    if "websocket.http.response" in scope.get("extensions", {}):
        start = {"type": "websocket.http.response.start", "status": answer.status}
        await send({**start, "headers": _raw(answer)})
        await send({"type": "websocket.http.response.body", "body": answer.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


def _raw(answer: Answer) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]


def _response_headers(forward: Forward, start: Message) -> list[tuple[bytes, bytes]]:
    """The app's response headers as the core wants them to go out (text in between)."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", ())]
    return [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in forward.response_headers(headers)
    ]


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
