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
from ._transport import api_url
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
    body = {"publishableKey": settings.publishable_key, "secretKey": settings.secret_key}
    body.update(payload)
    # What httpx's json= sends, encoded here once.
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    # A parsed URL is kept per endpoint: parsing one costs more than the rest of the request.
    url = api_url(settings.api_url + path)
    # Every header given (Host and Content-Length too, as httpx would add them): httpx
    # then has nothing to work out. Identity: the drivers read the reply's raw bytes.
    headers = [
        (b"Host", url.netloc),
        (b"Accept", b"application/json"),
        (b"Accept-Encoding", b"identity"),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"%d" % len(content)),
        (b"User-Agent", _USER_AGENT.encode("ascii")),
    ]
    if key is not None:
        headers.append((b"Idempotency-Key", key.encode("ascii")))
    timeout = settings.timeout
    request = httpx.Request(
        "POST",
        url,
        headers=headers,
        stream=httpx.ByteStream(content),
        # The drivers call the transport without an httpx client: the request carries
        # its timeouts, as the client would have set them.
        extensions={
            "timeout": {
                "connect": min(timeout, 5.0),
                "read": timeout,
                "write": timeout,
                "pool": timeout,
            }
        },
    )
    request.read()  # the body is in memory: request.content, as with content=
    return request


def _call(settings: Settings, request: httpx.Request, endpoint: str, path: str) -> Flow[Reply]:
    """Send ``request`` (to ``path`` of the API); retry once only if nothing was sent."""
    watch = settings.watch
    for attempt in (1, 2):
        # Observers see each attempt (a span per call, as OpenTelemetry's HTTP conventions ask).
        call = watch.call(endpoint, "POST", settings.api_url + path) if watch.active else None
        try:
            reply: Reply = yield Send(request, endpoint)
        except BaseException as exc:
            if call is not None:
                call.end(None, type(exc).__name__)
            if isinstance(exc, _NOT_SENT):
                if attempt == 2:
                    raise error_for_transport(
                        type(exc).__name__, sent=False, timed_out=False
                    ) from None
                continue
            if isinstance(exc, httpx.TimeoutException):
                raise error_for_transport(type(exc).__name__, sent=True, timed_out=True) from None
            if isinstance(exc, httpx.HTTPError):
                # The request may have arrived: never sent again.
                raise error_for_transport(type(exc).__name__, sent=True, timed_out=False) from None
            raise
        if call is not None:
            call.end(reply.status, None)
        return reply
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
    reply = yield from _call(settings, request, "tokens", "/oauth/tokens")
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
    reply = yield from _call(settings, request, "transactions", "/transactions")
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
    reply = yield from _call(settings, request, "charges", "/charges")
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
    path = f"/charges/{quote(charge_id, safe='')}/capture"
    request = _post(settings, path, {"accessToken": token, "amountMicros": micros}, key)
    reply = yield from _call(settings, request, "capture", path)
    _check(reply, call="charge")
    return None


def describe(error: SmallTransfersError) -> str:
    """A one-line, secret-free description of ``error`` for the log."""
    return f"{error.code}: {error.detail}"
