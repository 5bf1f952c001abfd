"""Where a call to Small Transfers is built and its reply understood.

Each call is a *flow* (see :mod:`._effects`): it yields a :class:`Send` and
receives the :class:`Reply`, or has the transport error thrown into it. The
drivers do the sending; every decision (retry or not, what a reply means) is
made here once.

Money rule: a request that may have reached Small Transfers is never sent
again. Only a failure to *connect* (nothing was sent) is retried, once.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ._config import Settings
from ._customer import Customer
from ._effects import Flow, Reply, Send
from ._errors import (
    Call,
    ProtocolError,
    SmallTransfersError,
    error_for_reply,
    error_for_transport,
)
from ._version import __version__

__all__ = [
    "BodyCollector",
    "TokenGrant",
    "authorize_charge",
    "capture_charge",
    "create_transaction",
    "describe",
    "exchange_code",
    "new_idempotency_key",
]

#: Replies bigger than this are not read further: no answer of the API is near it.
MAX_REPLY_BYTES = 64 * 1024
_USER_AGENT = f"st-middleware/{__version__}"
# Nothing was sent: the only failures after which a retry cannot charge twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class BodyCollector:
    """Collects a reply body with a size cap and an overall deadline.

    The drivers feed it chunks as they arrive; it tells them when to stop.
    A body that never ends hits the deadline; a huge one, the cap.
    """

    __slots__ = ("_chunks", "_deadline", "_size", "truncated")

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        self._chunks: list[bytes] = []
        self._size = 0
        self.truncated = False

    def feed(self, chunk: bytes) -> bool:
        """Keep ``chunk``; ``False`` means stop reading. Raises on the deadline."""
        self._size += len(chunk)
        if self._size > MAX_REPLY_BYTES:
            self.truncated = True
            return False
        self._chunks.append(chunk)
        if time.monotonic() > self._deadline:
            raise httpx.ReadTimeout("Small Transfers reply did not finish in time")
        return True

    def reply(self, status: int) -> Reply:
        return Reply(status, b"".join(self._chunks), self.truncated)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str = field(repr=False)
    customer: Customer


def new_idempotency_key() -> str:
    """A fresh key for one charge; logged with its outcome to trace it."""
    return str(uuid.uuid4())


def _post(settings: Settings, path: str, payload: dict[str, Any], key: str | None) -> httpx.Request:
    headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"publishableKey": settings.publishable_key, "secretKey": settings.secret_key}
    body.update(payload)
    return httpx.Request("POST", settings.api_url + path, json=body, headers=headers)


def _call(request: httpx.Request, endpoint: str) -> Flow[Reply]:
    """Send ``request``; retry once only if the connection was never made."""
    for attempt in (1, 2):
        try:
            reply: Reply = yield Send(request, endpoint)
            return reply
        except _NOT_SENT as exc:
            if attempt == 2:
                raise error_for_transport(type(exc).__name__, sent=False, timed_out=False) from None
        except httpx.TimeoutException as exc:
            raise error_for_transport(type(exc).__name__, sent=True, timed_out=True) from None
        except httpx.HTTPError as exc:
            # The request may have arrived: never sent again.
            raise error_for_transport(type(exc).__name__, sent=True, timed_out=False) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _decode(reply: Reply) -> Any:
    if reply.truncated:
        return None
    try:
        return json.loads(reply.body)
    except ValueError:
        return None


def _check(reply: Reply, *, call: Call) -> Any:
    """The JSON body of a 2xx reply; otherwise the error it means."""
    data = _decode(reply)
    if 200 <= reply.status < 300:
        return data
    code = detail = None
    if isinstance(data, dict):
        code = data.get("code") if isinstance(data.get("code"), str) else None
        for key in ("detail", "message", "title"):
            if isinstance(data.get(key), str):
                detail = data[key]
                break
    # The provider's text goes to the merchant's log only, cut short.
    text = f"Small Transfers answered {reply.status}" + (f": {detail[:200]}" if detail else "")
    raise error_for_reply(reply.status, code, text, call=call)


def exchange_code(settings: Settings, code: str) -> Flow[TokenGrant]:
    """``POST /oauth/tokens``: the access token and customer for an authorization code."""
    request = _post(
        settings,
        "/oauth/tokens",
        {"grantType": "authorization_code", "authorizationCode": code},
        None,
    )
    reply = yield from _call(request, "tokens")
    data = _check(reply, call="exchange")
    if not isinstance(data, dict) or not isinstance(data.get("accessToken"), str):
        raise ProtocolError("token reply without accessToken", code="bad_reply")
    try:
        customer = Customer.from_api(data.get("customer"))
    except ValueError:
        raise ProtocolError("token reply without a valid customer", code="bad_reply") from None
    return TokenGrant(data["accessToken"], customer)


def create_transaction(settings: Settings, token: str, micros: int, key: str) -> Flow[str | None]:
    """``POST /transactions``: charge ``micros`` now. Returns the id, if one is given."""
    request = _post(settings, "/transactions", {"accessToken": token, "amountMicros": micros}, key)
    reply = yield from _call(request, "transactions")
    data = _check(reply, call="charge")
    charge_id = data.get("id") if isinstance(data, dict) else None
    return str(charge_id) if isinstance(charge_id, (str, int)) else None


def authorize_charge(settings: Settings, token: str, micros: int, key: str) -> Flow[str]:
    """``POST /charges``: reserve up to ``micros``. Returns the charge id."""
    request = _post(
        settings,
        "/charges",
        {"accessToken": token, "currency": "usd", "amountMicros": micros},
        key,
    )
    reply = yield from _call(request, "charges")
    data = _check(reply, call="charge")
    charge_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(charge_id, (str, int)) or isinstance(charge_id, bool):
        # Money may be reserved, but without an id we cannot capture it.
        raise ProtocolError("authorization reply without an id", code="bad_reply")
    return str(charge_id)


def capture_charge(
    settings: Settings, token: str, charge_id: str, micros: int, key: str
) -> Flow[None]:
    """``POST /charges/{id}/capture``: take ``micros`` of the authorization."""
    request = _post(
        settings,
        f"/charges/{quote(charge_id, safe='')}/capture",
        {"accessToken": token, "amountMicros": micros},
        key,
    )
    reply = yield from _call(request, "capture")
    _check(reply, call="charge")
    return None


def describe(error: SmallTransfersError) -> str:
    """A one-line, secret-free description of ``error`` for the log."""
    return f"{error.code}: {error.detail}"
