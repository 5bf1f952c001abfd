"""Bare ASGI: a free page and a priced page (3000 micros = 0.003 USD per visit).

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/uvicorn examples.asgi_app:app --port 8000

and open http://127.0.0.1:8000/ (any ASGI server will do).
"""  # noqa: E501

from __future__ import annotations

from collections.abc import MutableMapping
from html import escape
from typing import Any
from urllib.parse import quote

from st_middleware import Customer, SmallTransfersASGI


def page(scope: MutableMapping[str, Any], root: str, path: str) -> str:
    customer: Customer | None = scope["smalltransfers.customer"]  # set on every request
    if customer is None:
        sign_in = f"{root}/smalltransfers/sign-in?next={quote(root + path)}"
        who = f'<p>Not signed in. <a href="{escape(sign_in)}">Sign in</a></p>'
    else:
        who = (
            f"<p>Signed in as {escape(customer.name)} ({escape(customer.email)}).</p>"
            f'<form method="post" action="{escape(root)}/smalltransfers/sign-out">'
            "<button>Sign out</button></form>"
        )
    charge = scope["smalltransfers.charge"]  # None on free requests
    if charge is not None:
        body = f"<h1>Premium article</h1><p>This visit cost {charge.amount_micros} micros.</p>"
    else:
        body = f'<p><a href="{escape(root)}/paid">Read the premium article</a> (0.003 USD)</p>'
    return f"<!doctype html><title>ASGI example</title>\n{who}\n{body}\n"


async def site(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # nothing to set up; the middleware closes its client
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    root = scope.get("root_path", "")  # the mount prefix, e.g. "/app"
    path = scope["path"].removeprefix(root)  # servers put the prefix in "path" too
    status, body = (200, page(scope, root, path)) if path in ("/", "/paid") else (404, "Not found")
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


# Keys, session secret and base URL come from the SMALL_TRANSFERS_* environment variables.
app = SmallTransfersASGI(site, pricing={"/paid": 3000})
