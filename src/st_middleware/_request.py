"""The neutral, canonical description of a request that the core decides on.

Adapters build a :class:`Request` from a WSGI environ or an ASGI scope; the
core and the merchant's pricing callable only ever see this. It is also the
"request description" the contract hands to ``pricing``: ``.method``,
``.path``, ``.query_string``, ``.headers`` and ``.customer``.

Frameworks route a *normalised* path, not the one written on the request
line: Werkzeug merges slashes and adds a missing leading one, Starlette's
``^/x$`` matches before a trailing newline, Django and Werkzeug upper-case the
method. Pricing what was written would leave each of those variants free, so
the method and path are made canonical here, once, and the same canonical
values serve pricing, ``next`` and the middleware's own routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ._customer import Customer

__all__ = [
    "Request",
    "canonical_path",
    "cookie_values",
    "forwarded_origin",
    "is_loopback_host",
    "is_plain_path",
]

# Control characters have no business in a path (header injection, and
# regex routers that match before a trailing newline); U+FFFD is what servers
# put where the bytes were not UTF-8; "." and ".." segments are resolved by
# every browser before sending, so a request holding one was crafted.
_UNFIT = re.compile(r"[\x00-\x1f\x7f\ufffd]|(?:^|/)\.\.?(?:/|$)")
_SLASHES = re.compile(r"//+")


def canonical_path(path: str) -> str | None:
    """``path`` as routers see it, or ``None`` when it must be refused (a 400).

    ``path`` is already percent-decoded (servers decode once; decoding again
    would price ``%252F`` as a slash no framework sees). Repeated slashes are
    merged and a leading slash is ensured; a trailing slash is kept (routers
    tell ``/x`` from ``/x/``).
    """
    if _UNFIT.search(path):
        return None
    if "//" in path:
        path = _SLASHES.sub("/", path)
    return path if path.startswith("/") else "/" + path


def is_plain_path(path: str) -> bool:
    """Whether ``path`` is certainly canonical already: the cheap test of the fast path.

    False does not mean unfit, only "ask :func:`canonical_path`".
    """
    return (
        path[:1] == "/"
        and path.isascii()
        and path.isprintable()
        and "//" not in path
        and "/." not in path
    )


class Request:
    """One HTTP request, as far as the middleware needs to know it.

    ``method`` is upper-cased. ``path`` is the canonical path inside the app
    (from ``PATH_INFO`` / the ASGI path without ``root_path``), ``raw_path``
    the one the server handed over, and ``unfit`` tells a path that must be
    refused. ``root_path`` is where the app is mounted (no trailing slash).
    ``scheme`` and ``host`` are the ones the visitor used: ``X-Forwarded-*``
    only counts when the adapter was told to trust the proxy that sent it.
    ``customer`` is filled in by the middleware before pricing runs.
    """

    __slots__ = (
        "_headers",
        "_headers_factory",
        "accept",
        "authorization",
        "body_source",
        "client",
        "cookie",
        "customer",
        "host",
        "method",
        "path",
        "query_string",
        "raw_path",
        "root_path",
        "scheme",
        "unfit",
        "websocket",
    )

    def __init__(
        self,
        *,
        method: str,
        scheme: str,
        host: str,
        path: str,
        root_path: str = "",
        query_string: str = "",
        cookie: str = "",
        accept: str = "",
        authorization: str = "",
        client: str | None = None,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        body_source: object = None,
        websocket: bool = False,
    ) -> None:
        self.method = method.upper()
        self.scheme = scheme
        self.host = host
        self.raw_path = path
        canonical = canonical_path(path)
        self.unfit = canonical is None
        self.path = canonical or "/"
        # A mount at "/" is the root: a trailing slash would build "//" URLs.
        self.root_path = root_path.rstrip("/")
        self.query_string = query_string
        self.cookie = cookie
        self.accept = accept
        #: The ``Authorization`` header (a program's bearer token), ``""`` when absent.
        self.authorization = authorization
        #: The peer's address (rate limits of the device flow), when the server gives it.
        self.client = client
        #: Where the adapter reads the body from (the environ, or ``receive``): adapters only.
        self.body_source = body_source
        #: A websocket handshake (a browser cannot come back to it after signing in).
        self.websocket = websocket
        self.customer: Customer | None = None
        # Most requests never look at every header: build them on demand.
        if callable(headers) and not isinstance(headers, Mapping):
            self._headers: Mapping[str, str] | None = None
            self._headers_factory: Callable[[], Mapping[str, str]] | None = headers
        else:
            self._headers = headers or {}
            self._headers_factory = None

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers, lower-case names (repeated headers joined with ``, ``)."""
        if self._headers is None:
            assert self._headers_factory is not None
            self._headers = self._headers_factory()
        return self._headers

    @property
    def wants_html(self) -> bool:
        """Browsers name ``text/html`` in ``Accept``; API clients (``*/*`` included) do not."""
        return "text/html" in self.accept

    @property
    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header (RFC 6750), if there is one."""
        scheme, _, token = self.authorization.strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    @property
    def is_head(self) -> bool:
        return self.method == "HEAD"

    @property
    def is_canonical(self) -> bool:
        """Whether the path was written as routers see it (no slash to merge or add)."""
        return self.raw_path == self.path

    def as_method(self, method: str) -> Request:
        """A copy that a pricing sees with another method (HEAD and OPTIONS are priced as GET)."""
        copy = Request.__new__(Request)
        for name in Request.__slots__:
            setattr(copy, name, getattr(self, name))
        copy.method = method
        return copy

    def __repr__(self) -> str:
        # No cookie, no query (it may carry an authorization code).
        return f"<Request {self.method} {self.root_path}{self.path}>"


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.1`` or ``[::1]``, with or without a port."""
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rpartition(":")[0] if ":" in host else host
    return name.lower() in ("localhost", "127.0.0.1", "[::1]")


def cookie_values(header: str, name: str) -> list[str]:
    """Every value of cookie ``name`` in a ``Cookie`` header.

    A plain split: ``SimpleCookie`` costs 20-30x more and chokes on the odd
    malformed neighbour cookie that browsers happily send. Commas split too:
    some servers (waitress) join repeated ``Cookie`` lines with ``", "``, and
    no cookie value of ours can hold one.
    """
    if name not in header:
        return []
    if "," in header:
        header = header.replace(",", ";")
    found = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found.append(value)
    return found


def forwarded_origin(
    scheme: str,
    host: str,
    client: str | None,
    trusted: frozenset[str],
    forwarded_proto: str | None,
    forwarded_host: str | None,
) -> tuple[str, str]:
    """The scheme and host the visitor used.

    ``X-Forwarded-Proto``/``-Host`` are believed only from a client address the
    merchant listed in ``trusted_proxies`` (or ``"*"``): anyone else could
    forge them to change cookie flags or the sign-in ``redirect_uri``. With
    several values (a proxy that appends), the last one is used: it is the one
    the nearest, trusted, proxy wrote; earlier ones came from the client side.
    """
    if not trusted or not (("*" in trusted) or (client is not None and client in trusted)):
        return scheme, host
    if forwarded_proto:
        proto = forwarded_proto.rsplit(",", 1)[-1].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
    if forwarded_host:
        host = forwarded_host.rsplit(",", 1)[-1].strip() or host
    return scheme, host
