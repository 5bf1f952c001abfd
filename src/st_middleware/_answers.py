"""Which answer goes back, and what the app's answer may carry on its way out.

An :class:`Answer` is a neutral response (status, headers, body) that the
adapters translate; :func:`error_answer` turns any :class:`SmallTransfersError`
into the visitor's page (browsers) or ``application/problem+json`` (API
clients), :func:`preflight_answer` answers an OPTIONS request to a priced path.
Texts shown to visitors are ours: a provider's message is never echoed, and
nothing secret is ever put in a body. :func:`private_cache` keeps a paid
answer, or one carrying our cookies, out of shared caches.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ._charge import ChargeMode, Price
from ._errors import (
    BadRequest,
    ChargeRefused,
    InvalidToken,
    ProtocolError,
    ServiceUnavailable,
    SignInFailed,
    SignInRequired,
    SmallTransfersError,
)
from ._pages import render_page
from ._request import Request
from ._routes import Routes

if TYPE_CHECKING:
    from ._config import Settings

__all__ = ["Answer", "Headers", "error_answer", "preflight_answer", "private_cache", "redirect"]

log = logging.getLogger("st_middleware")

Headers = list[tuple[str, str]]

# Our answers are about one visitor at one moment: never cached anywhere.
_PRIVATE: Headers = [("Cache-Control", "no-store")]
_HTML = "text/html; charset=utf-8"
_PROBLEM = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the middleware sends itself."""

    status: int
    headers: Headers
    body: bytes = b""

    def without_body(self) -> Answer:
        """The same answer for a HEAD request: headers (Content-Length included), no body."""
        return replace(self, body=b"")


def redirect(location: str, set_cookies: Iterable[str] = (), *, status: int = 303) -> Answer:
    """A redirect that leaks nothing: not cached, no ``Referer`` onwards."""
    headers: Headers = [
        ("Location", location),
        *_PRIVATE,
        ("Referrer-Policy", "no-referrer"),
        # wsgiref.validate (PEP 3333 manners) wants a type on every non-204/304 answer.
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", "0"),
    ]
    headers.extend(("Set-Cookie", cookie) for cookie in set_cookies)
    return Answer(status, headers)


def preflight_answer(request: Request, settings: Settings) -> Answer:
    """``204`` for an OPTIONS request to a priced path, with the merchant's CORS headers.

    The app never sees such a request: a CORS preflight carries no cookie, and
    some views serve content whatever the method.
    """
    headers: Headers = list(_PRIVATE)
    configured = settings.preflight_headers
    if callable(configured):
        try:
            configured = configured(request)
        except Exception:
            # The merchant's CORS policy failed: answer without granting anything.
            log.exception("preflight_headers raised; answering without CORS headers")
            configured = None
    if configured:
        headers.extend((str(name), str(value)) for name, value in configured.items())
    return Answer(204, headers)


# Directives that let a shared cache (CDN, proxy) store an answer.
_SHARED_DIRECTIVES = frozenset({"public", "s-maxage", "private"})


def private_cache(headers: Headers) -> Headers:
    """``headers`` made ``Cache-Control: private``: no shared cache stores the answer.

    ``public`` and ``s-maxage`` go (``private`` takes their place, unqualified:
    ``private="Set-Cookie"`` would still let the body be shared), every other
    directive stays, and the CDN-targeted headers that override
    ``Cache-Control`` for one cache (``CDN-Cache-Control`` and its vendor
    forms, ``Surrogate-Control``; RFC 9213) are removed.
    """
    kept: Headers = []
    directives = ["private"]
    for name, value in headers:
        lowered = name.lower()
        if lowered == "cache-control":
            for directive in value.split(","):
                directive = directive.strip()
                token = directive.partition("=")[0].strip().lower()
                if directive and token not in _SHARED_DIRECTIVES:
                    directives.append(directive)
        elif not (lowered.endswith("cdn-cache-control") or lowered == "surrogate-control"):
            kept.append((name, value))
    kept.append(("Cache-Control", ", ".join(directives)))
    return kept


# What each refusal code tells the visitor (ours, never the provider's words).
_REFUSAL_TEXT = {
    "charge_limit_exceeded": "What is left of your Small Transfers spending limit does not "
    "cover this page. Raise the limit on your dashboard, then reload this page.",
    "charges_blocked": "Charges are blocked on your Small Transfers account.",
    "payment_provider_declined": "Your payment provider declined the charge.",
}


def _limit_reached(error: SmallTransfersError) -> bool:
    return isinstance(error, ChargeRefused) and error.code == "charge_limit_exceeded"


def _text(error: SmallTransfersError) -> tuple[str, str]:
    """(heading, message) for the visitor."""
    if isinstance(error, SignInRequired):
        if error.code == SignInRequired.code:
            return "Sign in to continue", (
                "This page is paid per visit through Small Transfers. "
                "Sign in to allow the charge and see it."
            )
        return "Please sign in again", (
            "Your Small Transfers sign-in is no longer valid (it may have been revoked). "
            "Sign in again to continue."
        )
    if isinstance(error, ChargeRefused):
        return "Payment refused", _REFUSAL_TEXT.get(
            error.code, "Small Transfers could not charge your account for this page."
        )
    if isinstance(error, ServiceUnavailable):
        return "Payments are temporarily unavailable", (
            "We could not reach Small Transfers to charge this request. "
            "Nothing was charged. Please try again in a moment."
        )
    if isinstance(error, ProtocolError):
        return "Payment service error", (
            "This site could not complete the payment with Small Transfers. "
            "Nothing was charged. The site owner can find the details in their logs."
        )
    if isinstance(error, BadRequest):
        return "Bad request", (
            "The address of this request holds characters or segments that cannot be "
            "served (control characters, an invalid encoding, or '.' and '..' segments)."
        )
    if isinstance(error, SignInFailed):
        return "Sign-in did not complete", (
            "The sign-in could not be completed: it may have expired, been used already, "
            "or been started in another browser. Please sign in again."
        )
    return error.title, "This request could not be completed."


def error_answer(
    error: SmallTransfersError,
    request: Request,
    routes: Routes,
    *,
    price: Price | None = None,
    charge_mode: ChargeMode = "transaction",
    dashboard_url: str | None = None,
    next_path: str | None = None,
    set_cookies: Iterable[str] = (),
) -> Answer:
    """The visitor's answer to ``error`` on ``request``.

    ``price`` is what the request costs (worded after its mode, or
    ``charge_mode``); ``dashboard_url`` is offered when the spending limit is
    what stands in the way; ``next_path`` is where signing in should return to
    (default: this request).
    """
    price_micros = price.micros if price is not None else None
    offer_sign_in = isinstance(error, (SignInRequired, SignInFailed))
    sign_in_url = routes.sign_in_url(request, next_path) if offer_sign_in else None
    headers: Headers = list(_PRIVATE)
    if isinstance(error, ServiceUnavailable):
        headers.append(("Retry-After", str(error.retry_after)))
    heading, message = _text(error)
    if request.wants_html:
        body = render_page(
            title=heading,
            heading=heading,
            message=message,
            status=error.status,
            sign_in_url=sign_in_url,
            price_micros=price_micros,
            price_mode=(price.mode or charge_mode) if price is not None else charge_mode,
            price_description=price.description if price is not None else None,
            dashboard_url=dashboard_url if _limit_reached(error) else None,
            dashboard_label="Raise your spending limit on Small Transfers",
            back_url=routes.home(request),
            back_label="Back to the home page",
        )
        headers.append(("Content-Type", _HTML))
    else:
        problem: dict[str, object] = {
            "type": f"urn:st-middleware:error:{error.code}",
            "title": heading,
            "status": error.status,
            "detail": message,
            "code": error.code,
        }
        if sign_in_url is not None:
            origin = routes.origin(request)
            problem["sign_in_url"] = (origin or "") + sign_in_url
        if isinstance(error, SignInRequired):
            # A program's way in: the device flow, then Authorization: Bearer.
            settings = routes.settings
            problem["device_authorization_url"] = routes.absolute(request, settings.device_path)
            problem["token_url"] = routes.absolute(request, settings.token_path)
        if price is not None:
            problem["price_micros"] = price.micros
            problem["price_mode"] = price.mode or charge_mode
            if price.description:
                problem["price_description"] = price.description
        body = json.dumps(problem).encode("utf-8")
        headers.append(("Content-Type", _PROBLEM))
    if isinstance(error, SignInRequired):
        # RFC 9110 wants a challenge with every 401; programs read RFC 6750's.
        challenge = 'Bearer realm="smalltransfers"'
        if isinstance(error, InvalidToken):
            challenge += ', error="invalid_token"'
        headers.append(("WWW-Authenticate", challenge))
    headers.append(("Content-Length", str(len(body))))
    headers.extend(("Set-Cookie", cookie) for cookie in set_cookies)
    return Answer(error.status, headers, body)
