"""Every error the middleware can raise or answer with, and what each one means.

Each error type carries a stable ``code`` (safe to match on, safe to show) and
the HTTP ``status`` a visitor gets for it. The rule of the contract lives in
:func:`error_for_api_code`: which answer a Small Transfers error code turns into.
Nothing here ever holds a secret, a token, a code or a cookie value.
"""

from __future__ import annotations

__all__ = [
    "ChargeRefused",
    "ConfigurationError",
    "CookieTooLarge",
    "PricingError",
    "ProtocolError",
    "ServiceUnavailable",
    "SessionInvalid",
    "SignInFailed",
    "SignInRequired",
    "SmallTransfersError",
    "error_for_api_code",
]


class SmallTransfersError(Exception):
    """Base class: an error with a stable ``code`` and the visitor-facing ``status``."""

    code: str = "error"
    status: int = 500
    #: A short, visitor-safe title for pages and problem+json.
    title: str = "Something went wrong"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status})"


class ConfigurationError(SmallTransfersError, ValueError):
    """The middleware was set up wrongly; raised at construction, never per request."""

    code = "configuration_error"
    title = "Configuration error"


class CookieTooLarge(SmallTransfersError):
    """A sealed cookie would pass the 4096-byte browser limit; raised at seal time."""

    code = "cookie_too_large"
    title = "Session too large"


class SignInRequired(SmallTransfersError):
    """A priced request from a visitor with no valid session."""

    code = "sign_in_required"
    status = 401
    title = "Sign in to continue"


class SessionInvalid(SignInRequired):
    """Small Transfers no longer accepts the session's token (revoked or invalid).

    The visitor is asked to sign in again and the session cookie is cleared.
    """

    code = "invalid_access_token"
    title = "Please sign in again"


class ChargeRefused(SmallTransfersError):
    """Small Transfers refused to charge the customer (limit reached, blocked, declined)."""

    code = "charge_refused"
    status = 402
    title = "Payment required"


class ServiceUnavailable(SmallTransfersError):
    """Small Transfers could not be reached, timed out, or answered 5xx."""

    code = "service_unavailable"
    status = 503
    title = "Payments are temporarily unavailable"

    #: Seconds a client should wait before retrying (the ``Retry-After`` header).
    retry_after: int = 5


class ProtocolError(SmallTransfersError):
    """Small Transfers said our request was wrong: keys rejected, bad payload, odd reply.

    Never the visitor's fault: answered 502 and logged as a configuration or
    protocol error for the merchant to fix.
    """

    code = "bad_gateway"
    status = 502
    title = "Payment service error"


class SignInFailed(SmallTransfersError):
    """The sign-in callback could not complete (forged state, reused code, provider error)."""

    code = "sign_in_failed"
    status = 400
    title = "Sign-in failed"


class PricingError(SmallTransfersError):
    """The merchant's pricing callable returned something that is not a price."""

    code = "pricing_error"
    status = 500
    title = "Pricing error"


# The API error table of Small Transfers, folded into the contract's answers.
_BY_CODE: dict[str, type[SmallTransfersError]] = {
    "invalid_access_token": SessionInvalid,
    "authorization_revoked": SessionInvalid,
    "authorization_inactive": SessionInvalid,
    "charges_blocked": ChargeRefused,
    "charge_limit_exceeded": ChargeRefused,
    "payment_provider_declined": ChargeRefused,
    "maintenance_mode": ServiceUnavailable,
    "server_error": ServiceUnavailable,
    "authorization_code_gone": SignInFailed,
    # Everything below means our request was wrong or the merchant account is.
    "invalid_request": ProtocolError,
    "validation_error": ProtocolError,
    "unauthenticated": ProtocolError,
    "invalid_credentials": ProtocolError,
    "forbidden": ProtocolError,
    "admin_required": ProtocolError,
    "merchant_inactive": ProtocolError,
    "redirect_uri_not_found": ProtocolError,
    "charge_not_found": ProtocolError,
    "charge_already_captured": ProtocolError,
    "charge_amount_exceeds_authorized": ProtocolError,
    "charge_expired": ProtocolError,
    "charge_voided": ProtocolError,
}


def error_for_api_code(
    status: int, code: str | None, detail: str, *, with_token: bool
) -> SmallTransfersError:
    """The error a Small Transfers error reply means for the visitor.

    A known ``code`` decides. Without one (the seed-era API answered only a
    ``message``), the status does: 5xx is an outage, 402 a refusal, and a
    401/403 to a call that carried the customer's token (``with_token``) means
    the session is no longer valid; anything else is a protocol error.
    """
    kind = _BY_CODE.get(code or "")
    if kind is None:
        if status >= 500:
            kind = ServiceUnavailable
        elif status == 402:
            kind = ChargeRefused
        elif status in (401, 403) and with_token:
            kind = SessionInvalid
        else:
            kind = ProtocolError
    return kind(detail, code=code or kind.code)
