"""What keeps other web pages out of the emulator: the Host check, Origin checks, form tokens.

The emulator runs on a developer's machine, next to the browser they use for everything
else. Any page that browser opens could otherwise drive it:

- DNS rebinding: a hostile name re-pointed at 127.0.0.1 makes the page same-origin with
  the emulator. The browser still sends that name as Host, so `HostCheck` answers only
  to the emulator's own address, the loopback names and names added on purpose.
- Cross-site forms: a page can post a form to the emulator. The admin API insists on JSON
  (which no form can send) and `FormTokens` puts a token only the emulator's own pages
  know in each HTML form. Both also refuse a foreign `Origin` or `Referer`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from .messages import ApiError, Request, Response

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
# Binding to these listens on every address, so any IP literal may reach it.
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 -- names, not a bind
FORM_COOKIE = "st_emulator_form"
FORM_FIELD = "csrf_token"

# A Host header (or an --allow-host value): a DNS name, an IPv4 address or a bracketed
# IPv6 address, then an optional port. No userinfo, no path, no IPv6 zone.
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?")
_BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) gives


def _split_host(value: str) -> tuple[str, int | None] | None:
    """`(name, port)` of a Host value, lower-cased; None if it is not one."""
    match = _HOST.fullmatch(value.lower())
    if match is None:
        return None
    port = match.group("port")
    return match.group("name"), int(port) if port else None


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


class HostCheck:
    """Which Host headers the emulator answers to (all on its own port, unless said).

    The loopback names and the address it is bound to; any IP address when bound to all
    interfaces (an IP literal cannot be rebound, only a DNS name can); and each of
    `allowed`, a name with an optional ``:PORT`` (without one, any port: behind a proxy
    or a port mapping the browser sees another port).
    """

    def __init__(self, bound: str, allowed: Iterable[str] = ()) -> None:
        bound = bound.lower()
        self._names = LOOPBACK_NAMES | {f"[{bound}]" if ":" in bound else bound}
        self._any_ip = bound in WILDCARD_ADDRESSES
        self._allowed: set[tuple[str, int | None]] = set()
        for entry in allowed:
            parsed = _split_host(entry)
            if parsed is None:
                raise ValueError(
                    f"allowed host {entry!r} must be a host name or IP address (IPv6 in "
                    "brackets), optionally with :PORT"
                )
            self._allowed.add(parsed)

    def allows(self, header: str | None, port: int) -> bool:
        """Whether a request with this Host header (None: none sent) is for this emulator."""
        parsed = _split_host(header or "")
        if parsed is None:
            return False
        name, given = parsed
        given = 80 if given is None else given  # how browsers write http://name:80
        if (name, None) in self._allowed or (name, given) in self._allowed:
            return True
        if given != port:
            return False
        return name in self._names or (self._any_ip and _is_ip_literal(name))


def foreign_origin(request: Request) -> str | None:
    """The other site a browser says this request comes from, if it says so.

    Browsers send `Origin` with every POST (and cross-origin fetch), else often a
    `Referer`. Either must then be the emulator's own origin: ``http://`` + the Host
    header, which `HostCheck` has already accepted. "null" (sandboxed frames, data:
    URLs, no-referrer pages) counts as foreign. Clients that send neither (httpx,
    curl, the middleware) are not browsers and pass.
    """
    own = "http://" + request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return None
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return None if origin.lower() == own else origin


class FormTokens:
    """Per-form CSRF tokens for one request to the HTML pages.

    Each browser gets a random id in a cookie (HttpOnly, SameSite=Strict); a form's token
    is an HMAC of that id and the form's action under a secret of this emulator. Another
    site can neither read the token off the page (same-origin policy, and `HostCheck`
    against DNS rebinding) nor compute it, even if it manages to set the cookie: cookies
    are shared between all ports of localhost, the secret is not.
    """

    def __init__(self, secret: bytes, request: Request) -> None:
        self._secret = secret
        browser = request.cookie(FORM_COOKIE) or ""
        # A browser without the cookie (or with a mangled one) gets a new id with the page.
        self._new = _BROWSER_ID.fullmatch(browser) is None
        self._browser = secrets.token_urlsafe(32) if self._new else browser
        self._used = False

    def _token(self, action: str) -> str:
        message = f"{action}\n{self._browser}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def hidden_field(self, action: str) -> str:
        """The hidden input to put in the form posting to `action`."""
        self._used = True
        return f'<input type="hidden" name="{FORM_FIELD}" value="{self._token(action)}">'

    def verify(self, request: Request) -> None:
        """Raise 403 unless this POST carries its form's token and comes from no other site."""
        given = request.form().get(FORM_FIELD, "")
        expected = "" if self._new else self._token(request.path)
        if (
            foreign_origin(request) is not None
            or not expected
            or not hmac.compare_digest(given.encode(), expected.encode())
        ):
            raise ApiError(
                "forbidden",
                "This form was not sent from this emulator's own page (its form token is "
                "missing or stale, or another site sent it): reload the page and try again.",
            )

    def set_cookie(self, response: Response) -> Response:
        """Give a new browser its id, once a page with a form was rendered for it."""
        if self._new and self._used:
            # Strict: the cookie never rides along with a request another site starts.
            cookie = f"{FORM_COOKIE}={self._browser}; Path=/; HttpOnly; SameSite=Strict"
            response.headers.append(("Set-Cookie", cookie))
        return response
