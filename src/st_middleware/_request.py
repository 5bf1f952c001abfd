"""The neutral description of a request that the core decides on.

Adapters build a :class:`Request` from a WSGI environ or an ASGI scope; the
core and the merchant's pricing callable only ever see this. It is also the
"request description" the contract hands to ``pricing``: ``.method``,
``.path``, ``.query_string``, ``.headers`` and ``.customer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .customer import Customer

__all__ = ["Request", "cookie_values", "forwarded_origin", "is_loopback_host"]


class Request:
    """One HTTP request, as far as the middleware needs to know it.

    ``path`` is the path inside the app (``PATH_INFO`` / the ASGI path without
    ``root_path``); ``root_path`` is where the app is mounted. ``scheme`` and
    ``host`` are the ones the visitor used: ``X-Forwarded-*`` only counts when
    the adapter was told to trust the proxy that sent it. ``customer`` is
    filled in by the middleware before pricing runs.
    """

    __slots__ = (
        "_headers",
        "_headers_factory",
        "accept",
        "client",
        "cookie",
        "customer",
        "host",
        "method",
        "path",
        "query_string",
        "root_path",
        "scheme",
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
        client: str | None = None,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path or "/"
        self.root_path = root_path
        self.query_string = query_string
        self.cookie = cookie
        self.accept = accept
        self.client = client
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
    def is_secure_origin(self) -> bool:
        """Whether the visitor reached us over https, or over plain http on loopback."""
        return self.scheme == "https" or is_loopback_host(self.host)

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
    malformed neighbour cookie that browsers happily send.
    """
    if name not in header:
        return []
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
