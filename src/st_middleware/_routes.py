"""The one place the middleware's own paths and URLs are recognised and built.

It answers: is this request one of our routes; where may ``next`` send the
visitor back to; what are the sign-in, callback and authorize URLs.
"""

from __future__ import annotations

import enum
import re
from urllib.parse import quote, unquote_plus, urlencode

from ._config import Settings
from ._request import Request

__all__ = ["Route", "Routes", "query_params", "safe_next"]


class Route(enum.Enum):
    SIGN_IN = "sign-in"
    CALLBACK = "callback"
    SIGN_OUT = "sign-out"
    DEVICE = "device"
    VERIFY = "verify"
    TOKEN = "token"  # noqa: S105 - a route name, not a secret


# A host as browsers send it: a name or IPv4, or a bracketed IPv6, and a port.
_HOST_SHAPE = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
#: The query fields our routes read.
_FIELDS = frozenset({"code", "error", "next", "state"})
_MAX_NEXT = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters kept as they are when `next` goes back into a Location header:
# everything printable in ASCII that a path and query may hold, so a value is
# not double-encoded; anything else (non-ASCII) is percent-encoded.
_LOCATION_SAFE = "/?&=%:@!$'()*+,;~#[]-._"


class Routes:
    """Route matching and URL building for one middleware instance."""

    __slots__ = ("_by_path", "_settings")

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._by_path = {
            settings.sign_in_path: Route.SIGN_IN,
            settings.callback_path: Route.CALLBACK,
            settings.sign_out_path: Route.SIGN_OUT,
            settings.device_path: Route.DEVICE,
            settings.device_path + "/verify": Route.VERIFY,
            settings.token_path: Route.TOKEN,
        }

    @property
    def settings(self) -> Settings:
        return self._settings

    def owns(self, path: str) -> bool:
        """Whether ``path`` (inside the app) is one of our routes."""
        return path in self._by_path

    def match(self, request: Request) -> Route | None:
        """Which of our routes this request is for, if any (a dict look-up)."""
        return self._by_path.get(request.path)

    def origin(self, request: Request) -> str | None:
        """``scheme://host`` of the request, or ``None`` when the Host is not a host."""
        if not _HOST_SHAPE.fullmatch(request.host):
            return None
        return f"{request.scheme}://{request.host}"

    def redirect_uri(self, request: Request) -> str | None:
        """The absolute callback URL: configured, or built from the request."""
        if self._settings.redirect_uri:
            return self._settings.redirect_uri
        origin = self.origin(request)
        if origin is None:
            return None
        return origin + quote(request.root_path) + self._settings.callback_path

    def sign_in_url(self, request: Request, next_path: str | None = None) -> str:
        """The sign-in route (a same-site path), returning to ``next_path``.

        Defaults to this request's own full path and query.
        """
        if next_path is None:
            next_path = self.current_path(request)
        return (
            quote(request.root_path)
            + self._settings.sign_in_path
            + "?"
            + urlencode({"next": next_path})
        )

    def current_path(self, request: Request) -> str:
        """This request's path as the browser sees it (mount prefix and query included)."""
        path = quote(request.root_path + request.path, safe=_LOCATION_SAFE)
        if request.query_string:
            path += "?" + request.query_string
        return path

    def path(self, request: Request, path: str) -> str:
        """``path`` (one of ours, inside the app) as the browser sees it: mount prefix first."""
        return quote(request.root_path) + path

    def absolute(self, request: Request, path: str) -> str | None:
        """``path`` of ours as an absolute URL on this host (``None``: the Host is not a host)."""
        origin = self.origin(request)
        return None if origin is None else origin + self.path(request, path)

    def home(self, request: Request) -> str:
        """Where ``next`` falls back to: the mount root."""
        return quote(request.root_path) + "/"

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """``{base}/customer/authorize?...`` for the sign-in redirect."""
        settings = self._settings
        query = urlencode(
            {
                "publishable_key": settings.publishable_key,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": settings.scope,
                "state": state,
            }
        )
        return f"{settings.base_url}/customer/authorize?{query}"


def safe_next(value: str | None, fallback: str) -> str:
    """``value`` if it is a same-site path, else ``fallback``.

    Accepted: ``/`` followed by anything printable that cannot turn into
    another origin. Refused: ``//host`` and ``/\\host`` (browsers read both as
    another host), any backslash, a scheme, control characters (header
    injection), and over-long values.
    """
    if not value or len(value) > _MAX_NEXT:
        return fallback
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return fallback
    if "\\" in value or _CONTROL.search(value):
        return fallback
    encoded = quote(value, safe=_LOCATION_SAFE)
    # Measured encoded: it must fit in the state cookie and a Location header.
    return encoded if len(encoded) <= _MAX_NEXT else fallback


def query_params(query_string: str) -> dict[str, str]:
    """The first value of each query parameter our routes read (later repeats are ignored).

    Only the few fields our routes use are decoded, wherever they stand: a
    flood of other fields costs one split, never a 500, and cannot push
    ``error`` or ``state`` out of reach.
    """
    params: dict[str, str] = {}
    for part in query_string.split("&"):
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if key in _FIELDS and key not in params:
            params[key] = unquote_plus(value)
    return params
