"""A bare ASGI app and a bare WSGI app behind the middleware (test_stack_proxies.py).

The middleware's keywords beyond the keys come from ``STACK_ST_OPTIONS`` (JSON),
so one module serves every proxy configuration the tests try. Both apps
answer ``/paid`` (priced) with the customer who paid, anything else with "ok".
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI, customer_of

OPTIONS: dict[str, Any] = json.loads(os.environ.get("STACK_ST_OPTIONS") or "{}")
PRICING = {"/paid": 2000}


def _text(values: Any, path: str) -> bytes:
    if path != "/paid":
        return b"ok"
    customer = customer_of(values)
    return f"paid by {customer.id if customer is not None else None}".encode()


Message = MutableMapping[str, Any]


async def _asgi(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _text(scope, scope["path"])})


def _wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [_text(environ, environ.get("PATH_INFO", "/"))]


asgi = SmallTransfersASGI(_asgi, pricing=PRICING, **OPTIONS)
wsgi = SmallTransfersWSGI(_wsgi, pricing=PRICING, **OPTIONS)
