"""The emulator's own control API under `/_emulator/` (enabled with `admin=True` / `--admin`).

It mirrors the Python API of `Emulator` for harnesses that run the emulator as a
subprocess. Names are snake_case, like the Python keywords (this is not the Small
Transfers API). Bodies and answers are JSON; failures are problem+json
(`invalid_request` 400 for bad JSON or a missing field, `validation_error` 422 otherwise).

Only non-browser clients may use it: a POST (or any request with a body) must say
`Content-Type: application/json` (415 `unsupported_media_type` otherwise), and a request
whose `Origin` or `Referer` is another site is refused (403 `forbidden`). HTML forms and
no-cors fetches cannot send JSON, and a real cross-origin JSON request needs a CORS
preflight the emulator never grants; without this, any web page open in the developer's
browser could post text/plain "JSON" here and, say, replace the merchant's secret key.
The `Emulator` methods of the same names call the store directly, not this API.

    GET    /_emulator/faults      -> {"faults": PLAN + {"remaining": n|null} | null}
    POST   /_emulator/faults      {"latency", "error", "drop", "malformed", "huge_body",
                                   "endless_body", "count", "path"} (all optional)
                                  -> {"faults": ...}; replaces the active plan
    DELETE /_emulator/faults      -> {"faults": null}
    GET    /_emulator/ledger[?customer_id=ID] -> [ChargeRecord as an object, ...]
    GET    /_emulator/customers   -> [Customer as an object, ...]
    POST   /_emulator/customers   {"first_name", "last_name", "email", "limit_micros",
                                   "blocked"} -> 201 Customer
    POST   /_emulator/codes       {"customer_id", "redirect_uri"?, "publishable_key"?,
                                   "scope"?} -> 201 {"code"}
    POST   /_emulator/revoke      {"customer_id", "merchant"?} -> {"revoked": n}
    POST   /_emulator/merchants   {"publishable_key", "secret_key", "redirect_uris"?,
                                   "active"?} -> 201 (without the secret)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .faults import FaultPlan
from .guards import foreign_origin
from .messages import ApiError, Request, Response, json_response, problem_response
from .store import DEFAULT_LIMIT_MICROS

if TYPE_CHECKING:
    from .server import Emulator

T = TypeVar("T")
D = TypeVar("D")


def handle_admin(emulator: Emulator, request: Request) -> Response:
    """Answer one `/_emulator/*` control request."""
    try:
        _check_client(request)
        return _dispatch(emulator, request)
    except ApiError as error:
        return problem_response(error)
    except (ValueError, KeyError) as error:
        message = f"Unknown id: {error.args[0]}" if isinstance(error, KeyError) else str(error)
        return problem_response(ApiError("validation_error", message))


def _dispatch(emulator: Emulator, request: Request) -> Response:
    route = (request.method, request.path)
    if route == ("GET", "/_emulator/faults"):
        return json_response(200, {"faults": emulator.faults.describe()})
    if route == ("POST", "/_emulator/faults"):
        emulator.faults.set(FaultPlan.from_json(_body(request)))
        return json_response(200, {"faults": emulator.faults.describe()})
    if route == ("DELETE", "/_emulator/faults"):
        emulator.clear_faults()
        return json_response(200, {"faults": None})
    if route == ("GET", "/_emulator/ledger"):
        customer_id = request.query_params().get("customer_id") or None
        return json_response(200, [asdict(row) for row in emulator.ledger(customer_id)])
    if route == ("GET", "/_emulator/customers"):
        return json_response(200, [asdict(c) for c in emulator.customers()])
    if route == ("POST", "/_emulator/customers"):
        body = _body(request)
        customer = emulator.create_customer(
            first_name=_field(body, "first_name", str, "Test"),
            last_name=_field(body, "last_name", str, "Customer"),
            email=_field(body, "email", str, "test@example.com"),
            limit_micros=_field(body, "limit_micros", int, DEFAULT_LIMIT_MICROS),
            blocked=_field(body, "blocked", bool, False),
        )
        return json_response(201, asdict(customer))
    if route == ("POST", "/_emulator/codes"):
        body = _body(request)
        code = emulator.issue_code(
            customer_id=_field(body, "customer_id", str),
            redirect_uri=_field(body, "redirect_uri", str, None),
            publishable_key=_field(body, "publishable_key", str, None),
            scope=_field(body, "scope", str, "add-charge"),
        )
        return json_response(201, {"code": code})
    if route == ("POST", "/_emulator/revoke"):
        body = _body(request)
        revoked = emulator.revoke(
            customer_id=_field(body, "customer_id", str),
            merchant=_field(body, "merchant", str, None),
        )
        return json_response(200, {"revoked": revoked})
    if route == ("POST", "/_emulator/merchants"):
        body = _body(request)
        merchant = emulator.add_merchant(
            _field(body, "publishable_key", str),
            _field(body, "secret_key", str),
            redirect_uris=tuple(_field(body, "redirect_uris", list, [])),
            active=_field(body, "active", bool, True),
        )
        return json_response(
            201,
            {
                "publishable_key": merchant.publishable_key,
                "redirect_uris": list(merchant.redirect_uris),
                "active": merchant.active,
            },
        )
    raise ApiError("not_found", f"No control endpoint answers {request.method} {request.path}.")


def _check_client(request: Request) -> None:
    """Refuse what a web page in the developer's browser could send (see the docstring)."""
    origin = foreign_origin(request)
    if origin is not None:
        raise ApiError("forbidden", f"The admin API does not answer pages of {origin}.")
    if request.method in ("POST", "PUT", "PATCH") or request.body:
        media_type = request.headers.get("content-type", "").partition(";")[0]
        if media_type.strip().lower() != "application/json":
            raise ApiError(
                "unsupported_media_type", "The body must be sent as Content-Type: application/json."
            )


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise ApiError("invalid_request", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "The body must be a JSON object.")
    return body


_REQUIRED: Any = object()


@overload
def _field(body: dict[str, Any], name: str, kind: type[T]) -> T: ...


@overload
def _field(body: dict[str, Any], name: str, kind: type[T], default: D) -> T | D: ...


def _field(body: dict[str, Any], name: str, kind: type[Any], default: Any = _REQUIRED) -> Any:
    """`body[name]` checked against `kind`; without a default the field is required."""
    if name not in body or body[name] is None:
        if default is _REQUIRED:
            raise ApiError("invalid_request", f"{name} is required.")
        return default
    value = body[name]
    # bool is an int in Python; an amount given as true is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError("validation_error", f"{name} must be of type {kind.__name__}.")
    return value
