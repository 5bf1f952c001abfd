"""Every error the middleware can raise or answer with, and what each one means.

Each error type carries a stable ``code`` (safe to match on, safe to show), the
HTTP ``status`` a visitor gets for it and, for the errors a charge can end
in, the ``outcome`` logged and handed to ``on_charge_failed``. The whole
policy "which failure means 401, 402, 502 or 503" is this module:
:func:`error_for_reply` reads a Small Transfers error reply and
:func:`error_for_transport` a failed send. Nothing here ever holds a secret,
a token, a code or a cookie value.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "BadRequest",
    "ChargeRefused",
    "ConfigurationError",
    "CookieTooLarge",
    "InvalidToken",
    "PricingError",
    "ProtocolError",
    "ServiceUnavailable",
    "SessionInvalid",
    "SignInFailed",
    "SignInRequired",
    "SmallTransfersError",
    "capture_verdict",
    "error_for_reply",
    "error_for_transport",
]

#: How a charge ended, when it did not go as intended (see ``ChargeEvent.outcome``).
FailedOutcome = Literal["refused", "session_invalid", "unavailable", "protocol_error"]


class SmallTransfersError(Exception):
    """Base class: an error with a stable ``code`` and the visitor-facing ``status``."""

    code: str = "error"
    status: int = 500
    #: A short, visitor-safe title for pages and problem+json.
    title: str = "Something went wrong"
    #: What a charge that ends in this error is reported as.
    outcome: FailedOutcome = "protocol_error"

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


class BadRequest(SmallTransfersError):
    """A request no router would read the same way: control characters, bad encoding."""

    code = "invalid_path"
    status = 400
    title = "Bad request"


class SignInRequired(SmallTransfersError):
    """A priced request from a visitor with no valid session."""

    code = "sign_in_required"
    status = 401
    title = "Sign in to continue"
    outcome: FailedOutcome = "session_invalid"


class SessionInvalid(SignInRequired):
    """Small Transfers no longer accepts the session's token (revoked or invalid).

    The visitor is asked to sign in again and the session cookie is cleared.
    """

    code = "invalid_access_token"
    title = "Please sign in again"


class InvalidToken(SignInRequired):
    """A program's bearer token is tampered, expired, revoked or no longer accepted.

    Answered 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750).
    """

    code = "invalid_token"
    title = "Authorize this program again"


class ChargeRefused(SmallTransfersError):
    """Small Transfers refused to charge the customer (limit reached, blocked, declined)."""

    code = "charge_refused"
    status = 402
    title = "Payment required"
    outcome: FailedOutcome = "refused"


class ServiceUnavailable(SmallTransfersError):
    """Small Transfers could not be reached, timed out, or answered 5xx."""

    code = "service_unavailable"
    status = 503
    title = "Payments are temporarily unavailable"
    outcome: FailedOutcome = "unavailable"

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
    """The merchant's pricing callable raised or returned something that is not a price."""

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
#: The merchant's keys were refused: never the visitor's doing, whatever the call.
_KEYS_REFUSED = frozenset({"unauthenticated", "invalid_credentials"})

Call = Literal["exchange", "charge"]


def error_for_reply(
    status: int, code: str | None, detail: str, *, call: Call
) -> SmallTransfersError:
    """The error a Small Transfers error reply means for the visitor.

    A known ``code`` decides. Without one (the seed-era API answered only a
    ``message``), the status does: 5xx is an outage, 402 a refusal, and a
    401/403 to a call that carried the customer's token (a ``"charge"``)
    means the session is no longer valid; anything else is a protocol error.
    At the code ``"exchange"``, a refused code (400/404/410/422 that is not a
    key problem) means the visitor starts the sign-in again.
    """
    kind = _BY_CODE.get(code or "")
    if kind is None and status == 429:
        return ServiceUnavailable(detail, code=code or "rate_limited")
    if kind is None:
        if status >= 500:
            kind = ServiceUnavailable
        elif status == 402:
            kind = ChargeRefused
        elif status in (401, 403) and call == "charge":
            kind = SessionInvalid
        else:
            kind = ProtocolError
    if (
        call == "exchange"
        and kind is ProtocolError
        and status in (400, 404, 410, 422)
        and code not in _KEYS_REFUSED
    ):
        return SignInFailed(detail, code="invalid_code")
    return kind(detail, code=code or kind.code)


Verdict = Literal["confirmed", "retry", "terminal"]


def capture_verdict(error: SmallTransfersError) -> Verdict:
    """What a failed capture means for the outbox.

    A capture is safe to send again: a repeat of one that went through answers
    ``409 charge_already_captured``, which confirms it. An outage (no
    connection, a timeout, a reset, 429, 5xx, ``maintenance_mode``,
    ``server_error``) is retried; anything else (``charge_not_found``,
    ``charge_expired``, ``charge_voided``, ``charge_amount_exceeds_authorized``,
    ``validation_error``, a key or token problem) will never succeed.
    """
    if error.code == "charge_already_captured":
        return "confirmed"
    if isinstance(error, ServiceUnavailable):
        return "retry"
    return "terminal"


def error_for_transport(name: str, *, sent: bool, timed_out: bool) -> ServiceUnavailable:
    """The error a failed send means: always an outage, told apart for the log.

    ``sent`` is whether the request may have reached Small Transfers (then it
    is never sent again).
    """
    if not sent:
        return ServiceUnavailable(
            f"could not connect to Small Transfers ({name})", code="unreachable"
        )
    if timed_out:
        return ServiceUnavailable(
            f"Small Transfers did not answer in time ({name})", code="timeout"
        )
    return ServiceUnavailable(
        f"connection to Small Transfers failed ({name})", code="connection_lost"
    )
