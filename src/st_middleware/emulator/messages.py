"""Requests and responses as the emulator's handlers see them, and the API's error codes.

Handlers take a `Request` and return a `Response`; only `server.py` touches sockets.
Every API error is an `ApiError` carrying one of the codes of the Small Transfers error
reference, rendered as RFC 9457 problem+json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

# The codes and statuses of the public Small Transfers error reference, plus the three
# the emulator needs for its own routing (not_found, method_not_allowed, payload_too_large).
ERROR_STATUSES: dict[str, int] = {
    "invalid_request": 400,
    "validation_error": 422,
    "unauthenticated": 401,
    "invalid_credentials": 401,
    "invalid_access_token": 401,
    "authorization_code_gone": 410,
    "forbidden": 403,
    "admin_required": 403,
    "merchant_inactive": 403,
    "authorization_revoked": 403,
    "authorization_inactive": 403,
    "charges_blocked": 402,
    "charge_limit_exceeded": 402,
    "payment_provider_declined": 402,
    "charge_not_found": 404,
    "charge_already_captured": 409,
    "charge_amount_exceeds_authorized": 409,
    "charge_expired": 410,
    "charge_voided": 410,
    "maintenance_mode": 503,
    "server_error": 500,
    "redirect_uri_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
}

# The emulator's own refusals (see guards.py): not API errors, so never offered as faults.
GUARD_STATUSES: dict[str, int] = {
    "unsupported_media_type": 415,
    "misdirected_request": 421,
}


class ApiError(Exception):
    """An API failure with a stable `code`; its status comes from `ERROR_STATUSES` (or guards)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.status = ERROR_STATUSES[code] if code in ERROR_STATUSES else GUARD_STATUSES[code]
        self.detail = detail


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request; header names are lower-cased."""

    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def query_params(self) -> dict[str, str]:
        """The query string's parameters (first value of each)."""
        return _first_values(self.query)

    def form(self) -> dict[str, str]:
        """The form-urlencoded body's fields (first value of each)."""
        return _first_values(self.body.decode("utf-8", errors="replace"))

    def cookie(self, name: str) -> str | None:
        """The value of one plain cookie, if sent."""
        for part in self.headers.get("cookie", "").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
        return None


@dataclass
class Response:
    """A complete answer: status, headers (without Content-Length) and body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _first_values(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A JSON answer."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, [("Content-Type", "application/json"), *(headers or [])], body)


def problem_response(error: ApiError) -> Response:
    """An RFC 9457 problem+json answer; `message` repeats `detail` for seed-era clients."""
    payload = {
        "type": "about:blank",
        # With type about:blank, RFC 9457 asks for the status phrase as the title.
        "title": HTTPStatus(error.status).phrase,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "message": error.detail,
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(error.status, [("Content-Type", "application/problem+json")], body)
