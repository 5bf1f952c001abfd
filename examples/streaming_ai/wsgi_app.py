"""A streamed, token-priced "AI answer" for WSGI (authorize-capture).

Run against the emulator (``python -m st_middleware.emulator`` in another shell)::

    SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator \\
    SMALL_TRANSFERS_SESSION_SECRET=$(python -c "import secrets;print(secrets.token_urlsafe(32))") \\
    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 \\
    .venv/bin/waitress-serve --listen 127.0.0.1:8000 examples.streaming_ai.wsgi_app:app

then sign in at http://127.0.0.1:8000/smalltransfers/sign-in?next=/ask?q=why and read
``/ask?q=...`` as server-sent events. Each token is sent as it is produced; the last
event, ``cost``, tells the visitor what they pay. The middleware authorized
``MAX_ANSWER_MICROS`` before the model ran and captures the actual cost once the
stream has ended, so a crashed model costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from st_middleware import Charge, Price, SmallTransfersWSGI

from .model import MAX_ANSWER_MICROS, MICROS_PER_TOKEN, sse, tokens


def ask(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/ask":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"try /ask?q=..."]
    prompt = parse_qs(environ.get("QUERY_STRING", "")).get("q", [""])[0]
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    return _answer(prompt, environ["smalltransfers.charge"])


def _answer(prompt: str, charge: Charge) -> Iterator[bytes]:
    count = 0
    for token in tokens(prompt):
        count += 1
        charge.capture_micros = count * MICROS_PER_TOKEN  # what was produced so far
        yield sse("token", token)
    yield sse(
        "cost",
        {
            "tokens": count,
            "cost_micros": charge.amount_micros,
            "authorized_micros": MAX_ANSWER_MICROS,
        },
    )


def pricing(request: Any) -> Price | None:
    if request.path == "/ask":
        return Price(MAX_ANSWER_MICROS, mode="authorize-capture")
    return None


app = SmallTransfersWSGI(ask, pricing=pricing)
