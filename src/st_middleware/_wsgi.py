"""The WSGI adapter: translates environ <-> the core, sends calls with a pooled sync client."""

from __future__ import annotations

import http
import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import api
from ._base import BaseMiddleware
from .answers import Answer
from .config import check_transport
from .core import Call, Forward, NeedsPrice, Respond
from .errors import ConfigurationError
from .request import Request, forwarded_origin

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
        self._client = httpx.Client(**self._client_options())

    def close(self) -> None:
        """Close the pooled connections to Small Transfers."""
        self._client.close()

    # -- the request --------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path.isascii() and self._core.plainly_free(
            environ.get("REQUEST_METHOD", "GET"), path, environ.get("HTTP_COOKIE", "")
        ):
            environ["smalltransfers.customer"] = None
            environ["smalltransfers.charge"] = None
            return self.app(environ, start_response)
        request = self._request(environ)
        core = self._core
        step = core.begin(request)
        if isinstance(step, NeedsPrice):
            try:
                raw: object = step.price_of(request)
            except Exception as exc:
                raw = exc
            step = core.priced(step, raw)
        if isinstance(step, Call):
            step = self._drive(step.flow)
        if isinstance(step, Respond):
            return _respond(step.answer, start_response)
        assert isinstance(step, Forward)
        environ["smalltransfers.customer"] = step.customer
        environ["smalltransfers.charge"] = step.charge
        if not step.set_cookies and step.capture is None:
            return self.app(environ, start_response)
        return self._forward(step, environ, start_response)

    def _request(self, environ: Mapping[str, Any]) -> Request:
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST") or (
            f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
        )
        client = environ.get("REMOTE_ADDR")
        trusted = self.settings.trusted_proxies
        if trusted:
            scheme, host = forwarded_origin(
                scheme,
                host,
                client,
                trusted,
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
            client=client,
            headers=lambda: _headers(environ),
        )

    def _forward(
        self, step: Forward, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        extra = [("Set-Cookie", cookie) for cookie in step.set_cookies]
        seen: list[int] = []

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            seen.append(int(status[:3]))
            return start_response(status, headers + extra if extra else headers, exc_info)

        if step.capture is None:
            return self.app(environ, start)
        try:
            body = self.app(environ, start)
        except BaseException:
            self._capture(step, seen, failed=True)
            raise
        return _ClosingBody(body, lambda failed: self._capture(step, seen, failed))

    def _capture(self, step: Forward, seen: list[int], failed: bool) -> None:
        flow = self._core.capture(step, seen[-1] if seen else None, failed)
        if flow is None:
            return
        try:
            self._drive(flow)
        except Exception:
            # The response is already out: a capture problem is logged, never raised.
            log.exception("capture could not be sent")

    # -- calls to Small Transfers ----------------------------------------------------

    def _drive(self, flow: Generator[httpx.Request, api.Reply, T]) -> T:
        """Run a flow of :mod:`.api` to its end with the pooled sync client."""
        try:
            request = next(flow)
            while True:
                try:
                    reply = self._send(request)
                except httpx.HTTPError as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(reply)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _send(self, request: httpx.Request) -> api.Reply:
        response = self._client.send(request, stream=True)
        try:
            collector = api.BodyCollector(self.settings.timeout)
            for chunk in response.iter_bytes():
                if not collector.feed(chunk):
                    break
            return collector.reply(response.status_code)
        finally:
            response.close()


class _ClosingBody:
    """The app's body, passed through untouched; the capture runs in ``close()``.

    A class rather than a generator: a generator's ``finally`` does not run
    when the server calls ``close()`` before the first item, and the capture
    would silently never happen.
    """

    __slots__ = ("_body", "_done", "_failed", "_on_close")

    def __init__(self, body: Iterable[bytes], on_close: Callable[[bool], None]) -> None:
        self._body = body
        self._on_close = on_close
        self._failed = False
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._failed = True
            raise
        finally:
            self._on_close(self._failed)


def _respond(answer: Answer, start_response: StartResponse) -> list[bytes]:
    status = f"{answer.status} {http.HTTPStatus(answer.status).phrase}"
    start_response(status, answer.headers)
    return [answer.body]


def _text(value: str) -> str:
    """A WSGI path (bytes carried as latin-1) as the text ASGI would give: UTF-8 decoded."""
    if value.isascii():
        return value
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


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
