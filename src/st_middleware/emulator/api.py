"""The JSON API under `/api/v1`, as in the Small Transfers API page.

Each handler validates the request's shape (400 `invalid_request` for a missing field or
bad JSON, 422 `validation_error` for a bad amount) and hands the rest to the store, which
authenticates and applies the ledger's rules in one transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .messages import ApiError, Request, Response, json_response, problem_response
from .store import Store

# Amounts stay within the integers JSON (and JavaScript) represent exactly.
MAX_MICROS = 2**53 - 1
MAX_BODY_BYTES = 1024 * 1024

_CAPTURE = re.compile(r"/api/v1/charges/([^/]+)/capture")


def handle_api(store: Store, request: Request) -> Response:
    """Answer one `/api/v1/*` request; every failure becomes problem+json."""
    try:
        handler, args = _route(request)
        return handler(store, request, *args)
    except ApiError as error:
        return problem_response(error)


Handler = Callable[..., Response]


def _route(request: Request) -> tuple[Handler, tuple[str, ...]]:
    path = request.path
    handler: Handler | None = _ROUTES.get(path)
    args: tuple[str, ...] = ()
    if handler is None and (match := _CAPTURE.fullmatch(path)):
        handler, args = _capture, (match.group(1),)
    if handler is None:
        raise ApiError("not_found", f"No API endpoint at {path}.")
    if request.method != "POST":
        raise ApiError("method_not_allowed", f"{path} accepts POST only.")
    return handler, args


def _exchange_token(store: Store, request: Request) -> Response:
    body = _json_body(request)
    if _string(body, "grantType") != "authorization_code":
        raise ApiError("invalid_request", 'grantType must be "authorization_code".')
    token, scope, customer = store.exchange_code(
        _string(body, "publishableKey"),
        _string(body, "secretKey"),
        _string(body, "authorizationCode"),
    )
    return json_response(
        200,
        {
            "accessToken": token,
            "tokenType": "bearer",
            "scope": scope,
            "customer": customer.to_api(),
        },
    )


def _transaction(store: Store, request: Request) -> Response:
    body = _json_body(request)
    keys = _credentials(body)
    amount = _amount(body, allow_zero=False)
    record = store.charge(*keys, amount, "transaction", request.headers.get("idempotency-key"))
    return json_response(
        201,
        {
            "id": record.id,
            "amountMicros": record.captured_micros,
            "currency": "usd",
            "status": "captured",
        },
    )


def _charge(store: Store, request: Request) -> Response:
    body = _json_body(request)
    keys = _credentials(body)
    # The starters always send "usd"; the public material does not say it is required.
    currency = body.get("currency", "usd")
    if currency != "usd":
        raise ApiError("validation_error", 'currency must be "usd".')
    amount = _amount(body, allow_zero=False)
    record = store.charge(*keys, amount, "charge", request.headers.get("idempotency-key"))
    return json_response(
        201,
        {
            "id": record.id,
            "amountMicros": record.authorized_micros,
            "currency": "usd",
            "status": "authorized",
        },
    )


def _capture(store: Store, request: Request, charge_id: str) -> Response:
    body = _json_body(request)
    keys = _credentials(body)
    amount = _amount(body, allow_zero=True)
    record = store.capture(*keys, charge_id, amount)
    return json_response(
        200,
        {
            "id": record.id,
            "capturedMicros": record.captured_micros,
            "authorizedMicros": record.authorized_micros,
            "currency": "usd",
            "status": "captured",
        },
    )


_ROUTES: dict[str, Handler] = {
    "/api/v1/oauth/tokens": _exchange_token,
    "/api/v1/transactions": _transaction,
    "/api/v1/charges": _charge,
}


def _json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type.lower():
        raise ApiError("invalid_request", "The body must be JSON (Content-Type: application/json).")
    try:
        body = json.loads(request.body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError("invalid_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "The body must be a JSON object.")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError("invalid_request", f"{name} is required and must be a string.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError("invalid_request", f"{name} is not valid text.") from None
    return value


def _credentials(body: dict[str, Any]) -> tuple[str, str, str]:
    return (
        _string(body, "publishableKey"),
        _string(body, "secretKey"),
        _string(body, "accessToken"),
    )


def _amount(body: dict[str, Any], *, allow_zero: bool) -> int:
    if "amountMicros" not in body:
        raise ApiError("invalid_request", "amountMicros is required.")
    value = body["amountMicros"]
    # type() rather than isinstance(): a JSON true is a bool, which is an int in Python.
    low = 0 if allow_zero else 1
    if type(value) is not int or not low <= value <= MAX_MICROS:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ApiError("validation_error", f"amountMicros must be {kind} integer.")
    return value
