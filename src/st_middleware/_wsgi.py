"""The WSGI adapter: environ <-> the core, and the synchronous driver of its flows."""

from __future__ import annotations

import atexit
import http
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx

from ._api import BodyCollector
from ._base import BaseMiddleware
from ._config import check_transport
from ._core import Forward, Respond
from ._effects import AskPricing, Flow, ReadBody, Reply, Run, Send, StoreCall
from ._errors import ConfigurationError
from ._request import Request, forwarded_origin
from ._transport import default_transport
from ._values import CHARGE, CUSTOMER

__all__ = ["SmallTransfersWSGI"]

log = logging.getLogger("st_middleware")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
T = TypeVar("T")


class SmallTransfersWSGI(BaseMiddleware[WSGIApp]):
    """Wrap a WSGI app: sign-in routes, session cookie, and a charge per priced request.

    ``SmallTransfersWSGI(app, publishable_key=..., secret_key=..., session_secret=...,
    pricing={"/paid": 3000})``; every keyword left ``None`` is read from its
    ``SMALL_TRANSFERS_*`` environment variable. See the README for all options.
    The app finds ``environ["smalltransfers.customer"]`` and
    ``environ["smalltransfers.charge"]`` on every request it sees.
    """

    def _setup(self) -> None:
        if self.settings.pricing_is_async:
            raise ConfigurationError(
                "pricing is an async function: WSGI cannot await it; "
                "use SmallTransfersASGI or a plain function"
            )
        check_transport(self.settings.transport, httpx.BaseTransport, "SmallTransfersWSGI")
        # Called directly: httpx.Client's cookie, auth, redirect and hook work is not needed
        # (each request carries its timeouts, see _api._post).
        self._transport: httpx.BaseTransport = default_transport(
            asynchronous=False, **self._client_options()
        )
        self._handlers: dict[type[Any], Callable[[Any], Any]] = {
            Send: self._send,
            AskPricing: self._ask_pricing,
            StoreCall: self._store_call,
            ReadBody: self._read_body,
        }
        self._worker: _CaptureWorker | None = None
        self._worker_lock = threading.Lock()

    def close(self) -> None:
        """Stop the capture worker (one last try for pending captures), close the connections."""
        self._stop_captures()
        self._stores.close()
        self._transport.close()

    # -- the request --------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._worker is None:
            self._start_captures()
        if "HTTP_AUTHORIZATION" not in environ and self._core.plainly_free(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO") or "/",
            environ.get("HTTP_COOKIE", ""),
        ):
            environ[CUSTOMER] = environ[CHARGE] = None
            return self.app(environ, start_response)
        decision = self._run(self._core.handle(self._request(environ)))
        if isinstance(decision, Respond):
            answer = decision.answer
            start_response(
                f"{answer.status} {http.HTTPStatus(answer.status).phrase}", answer.headers
            )
            return [answer.body]
        environ[CUSTOMER], environ[CHARGE] = decision.customer, decision.charge
        if decision.plain:
            return self.app(environ, start_response)
        return self._forward(decision, environ, start_response)

    def _request(self, environ: Mapping[str, Any]) -> Request:
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST") or (
            f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
        )
        if self.settings.trusted_proxies:
            scheme, host = forwarded_origin(
                scheme,
                host,
                environ.get("REMOTE_ADDR"),
                self.settings.trusted_proxies,
                environ.get("HTTP_X_FORWARDED_PROTO"),
                environ.get("HTTP_X_FORWARDED_HOST"),
            )
        return Request(
            method=environ.get("REQUEST_METHOD", "GET"),
            scheme=scheme,
            host=host,
            path=_text(environ.get("PATH_INFO", "")),
            root_path=_text(environ.get("SCRIPT_NAME", "")),
            query_string=environ.get("QUERY_STRING", ""),
            cookie=environ.get("HTTP_COOKIE", ""),
            accept=environ.get("HTTP_ACCEPT", ""),
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            client=environ.get("REMOTE_ADDR"),
            headers=lambda: _headers(environ),
            body_source=environ,
        )

    def _forward(
        self, forward: Forward, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        seen: list[int] = []

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            seen.append(int(status[:3]))
            return start_response(status, forward.response_headers(headers), exc_info)

        if forward.capture is None:
            return self.app(environ, start)
        try:
            body = self.app(environ, start)
        except BaseException:
            self._after(forward, seen, failed=True)
            raise
        on_close = _Once(lambda failed: self._after(forward, seen, failed))
        file_wrapper = environ.get("wsgi.file_wrapper")
        # The server's own file wrapper must reach it as it is, or it loses
        # sendfile(): capture from its close() instead of wrapping it.
        if (
            isinstance(file_wrapper, type)
            and isinstance(body, file_wrapper)
            and _hook_close(body, on_close)
        ):
            return body
        return _ClosingBody(body, on_close)

    def _after(self, forward: Forward, seen: list[int], failed: bool) -> None:
        flow = self._core.after_response(forward, seen[-1] if seen else None, failed)
        if flow is None:
            return
        try:
            self._run(flow)
        except Exception:
            # The response is already out: a capture problem is logged, never raised.
            log.exception("capture could not be sent")

    # -- the driver: carries out what a flow asks for ------------------------------

    def _run(self, flow: Flow[T]) -> T:
        run = Run(flow)
        for effect in run:
            run.settle(self._handlers[type(effect)], effect)
        return run.value

    def _send(self, effect: Send) -> Reply:
        response = self._transport.handle_request(effect.request)
        try:
            collector = BodyCollector(self.settings.timeout)
            # The raw bytes: our requests ask for no content coding (see _api._post).
            for chunk in cast("httpx.SyncByteStream", response.stream):
                if not collector.feed(chunk):
                    break
            return collector.reply(response.status_code)
        finally:
            response.close()

    @staticmethod
    def _ask_pricing(effect: AskPricing) -> object:
        return effect.rule.ask(effect.request)

    @staticmethod
    def _read_body(effect: ReadBody) -> bytes:
        environ: Any = effect.request.body_source
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # PEP 3333: never read past CONTENT_LENGTH (none given: no body).
        return environ["wsgi.input"].read(min(length, effect.limit)) if length > 0 else b""

    def _store_call(self, effect: StoreCall) -> Any:
        return getattr(self._stores.sync, effect.method)(*effect.args)

    # -- the capture worker: retries captures in the store's outbox ----------------

    def _start_captures(self) -> None:
        # At the first request, not at construction: a server that forks its
        # workers after importing the app would lose a thread started earlier.
        with self._worker_lock:
            if self._worker is None:
                self._worker = _CaptureWorker(self)
                self._worker.start()
                atexit.register(self._stop_captures)

    def _stop_captures(self) -> None:
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is None:
            return
        atexit.unregister(self._stop_captures)
        worker.stop()
        try:
            self._run(self._core.capture_round(final=True))  # one last try
        except Exception:
            log.exception("the last capture round failed")


class _CaptureWorker(threading.Thread):
    """Runs the core's capture rounds until stopped (a daemon: never holds the process up)."""

    def __init__(self, middleware: SmallTransfersWSGI) -> None:
        super().__init__(name="st-middleware-captures", daemon=True)
        self._middleware = middleware
        self._stopping = threading.Event()

    def run(self) -> None:
        wait = 0.0
        while not self._stopping.wait(wait):
            try:
                wait = self._middleware._run(self._middleware._core.capture_round())
            except Exception:
                log.exception("capture worker round failed")
                wait = 5.0

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=self._middleware.settings.timeout + 1)


class _Once:
    """Calls ``then(failed)`` once, whoever closes first."""

    __slots__ = ("_then",)

    def __init__(self, then: Callable[[bool], None]) -> None:
        self._then: Callable[[bool], None] | None = then

    def __call__(self, failed: bool) -> None:
        then, self._then = self._then, None
        if then is not None:
            then(failed)


class _ClosingBody:
    """The app's body, passed through untouched; the capture runs in ``close()``.

    A class rather than a generator: a generator's ``finally`` does not run
    when the server calls ``close()`` before the first item, and the capture
    would silently never happen.
    """

    __slots__ = ("_body", "_complete", "_done", "_failed", "_on_close")

    def __init__(self, body: Iterable[bytes], on_close: Callable[[bool], None]) -> None:
        self._body = body
        self._on_close = on_close
        self._failed = False
        self._complete = False
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except GeneratorExit:
            # The server stopped reading (the visitor hung up): not the app's
            # failure. The work so far was done, and close() captures it.
            raise
        except BaseException:
            self._failed = True
            raise
        self._complete = True

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException:
            if self._complete:
                log.warning("the app's close() raised after its response was complete")
            else:
                self._failed = True
            raise
        finally:
            self._on_close(self._failed)


def _hook_close(body: object, on_close: Callable[[bool], None]) -> bool:
    """Make ``body.close()`` also run ``on_close``; False if the object does not allow it."""
    original = getattr(body, "close", None)

    def close() -> None:
        try:
            if original is not None:
                original()
        finally:
            on_close(False)

    try:
        body.close = close  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return True


def _text(value: str) -> str:
    """A WSGI path (bytes carried as latin-1) as the text ASGI would give: UTF-8 decoded.

    Bytes that are not UTF-8 become U+FFFD, as ASGI servers make them, and the
    core refuses the path.
    """
    if value.isascii():
        return value
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value  # a server that already decoded it
    return raw.decode("utf-8", "replace")


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers
