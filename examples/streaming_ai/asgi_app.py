"""A streamed, token-priced "AI answer" for ASGI (authorize-capture).

Run against the emulator (``python -m st_middleware.emulator`` in another shell)::

    SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator \\
    SMALL_TRANSFERS_SESSION_SECRET=$(python -c "import secrets;print(secrets.token_urlsafe(32))") \\
    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 \\
    .venv/bin/uvicorn examples.streaming_ai.asgi_app:app --port 8000

Same behaviour as the WSGI version: tokens stream as server-sent events, each
one sent as its own ASGI body message; the final ``cost`` event shows the
amount captured after the stream ends.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from st_middleware import Price, SmallTransfersASGI

from .model import MAX_ANSWER_MICROS, MICROS_PER_TOKEN, sse, tokens


async def ask(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] != "/ask":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"try /ask?q=..."})
        return
    prompt = parse_qs(scope["query_string"].decode()).get("q", [""])[0]
    charge = scope["smalltransfers.charge"]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    count = 0
    for token in tokens(prompt):
        await asyncio.sleep(0)  # a real model would await its next token here
        count += 1
        charge.capture_micros = count * MICROS_PER_TOKEN
        await send({"type": "http.response.body", "body": sse("token", token), "more_body": True})
    final = {
        "tokens": count,
        "cost_micros": charge.amount_micros,
        "authorized_micros": MAX_ANSWER_MICROS,
    }
    await send({"type": "http.response.body", "body": sse("cost", final), "more_body": False})


def pricing(request: Any) -> Price | None:
    if request.path == "/ask":
        return Price(MAX_ANSWER_MICROS, mode="authorize-capture")
    return None


app = SmallTransfersASGI(ask, pricing=pricing)
