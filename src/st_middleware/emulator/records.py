"""The emulator's records, as its Python API returns them. Amounts are integers in micros."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

ChargeKind = Literal["transaction", "charge"]
ChargeState = Literal["authorized", "captured", "lapsed"]


@dataclass(frozen=True)
class Merchant:
    """A merchant account: its key pair, the redirect URIs it registered, and whether it is active.

    An empty `redirect_uris` accepts any loopback redirect URI (local development).
    """

    publishable_key: str
    secret_key: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()
    active: bool = True

    def accepts_redirect_uri(self, uri: str) -> bool:
        """Whether sign-in may send the browser back to `uri`."""
        if self.redirect_uris:
            return uri in self.redirect_uris
        return is_loopback_uri(uri)


@dataclass(frozen=True)
class Customer:
    """A test customer. `limit_micros` caps what all merchants may charge them in total."""

    id: str
    first_name: str
    last_name: str
    email: str
    live: bool
    limit_micros: int
    blocked: bool = False

    def to_api(self) -> dict[str, Any]:
        """The customer as the token endpoint presents it."""
        return {
            "id": self.id,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "live": self.live,
        }


@dataclass(frozen=True)
class ChargeRecord:
    """One ledger row: a transaction (charged at once) or an authorized charge.

    `merchant` is the merchant's publishable key; `idempotency_key` is the
    `Idempotency-Key` header of the request that created the row (recorded, never
    used to deduplicate, as the real service does not yet). Times are Unix seconds.
    """

    id: str
    merchant: str
    customer_id: str
    kind: ChargeKind
    state: ChargeState
    authorized_micros: int
    captured_micros: int
    idempotency_key: str | None
    created_at: float
    expires_at: float | None = None
    captured_at: float | None = None


@dataclass(frozen=True)
class Grant:
    """A customer's permission for one merchant: live while one of its tokens is unrevoked."""

    merchant: str
    customer_id: str
    scope: str
    granted_at: float
    active_tokens: int


# A loopback redirect URI spelled so plainly that every URL parser reads the same host:
# lower-case http(s)://, exactly one of three hosts, an optional decimal port, then a path
# or query made of RFC 3986 characters (or nothing), no fragment. Anything else is refused
# rather than interpreted. Browsers follow the WHATWG URL standard: they treat "\" as "/",
# drop tabs and newlines, decode %-escapes in hosts and read numeric IPv4 forms, so
# `urlsplit` can see a loopback host where the browser goes elsewhere:
# "http://evil.com\@127.0.0.1/" is evil.com to a browser. Hence no backslash, no userinfo
# (an "@" before the path), no whitespace, control or non-ASCII character anywhere.
_LOOPBACK_URI = re.compile(
    r"https?://(?:(?i:localhost)|127\.0\.0\.1|\[::1\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?:[/?][-A-Za-z0-9._~!$&'()*+,;=:@/?%]*)?"
)


def is_loopback_uri(uri: str) -> bool:
    """A plain absolute http(s) URI on localhost, 127.0.0.1 or [::1], without a fragment."""
    match = _LOOPBACK_URI.fullmatch(uri)
    return match is not None and int(match.group("port") or 0) <= 65535
