"""Bare WSGI: a free page and a priced page (3000 micros = 0.003 USD per visit).

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/gunicorn --bind 127.0.0.1:8000 examples.wsgi_app:app

and open http://127.0.0.1:8000/ (any WSGI server will do).
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape
from typing import Any
from urllib.parse import quote

from st_middleware import Customer, SmallTransfersWSGI


def page(environ: dict[str, Any]) -> str:
    root = environ.get("SCRIPT_NAME", "")  # the mount prefix, e.g. "/app"
    customer: Customer | None = environ["smalltransfers.customer"]  # set on every request
    if customer is None:
        sign_in = f"{root}/smalltransfers/sign-in?next={quote(root + environ['PATH_INFO'])}"
        who = f'<p>Not signed in. <a href="{escape(sign_in)}">Sign in</a></p>'
    else:
        who = (
            f"<p>Signed in as {escape(customer.name)} ({escape(customer.email)}).</p>"
            f'<form method="post" action="{escape(root)}/smalltransfers/sign-out">'
            "<button>Sign out</button></form>"
        )
    charge = environ["smalltransfers.charge"]  # None on free requests
    if charge is not None:
        body = f"<h1>Premium article</h1><p>This visit cost {charge.amount_micros} micros.</p>"
    else:
        body = f'<p><a href="{escape(root)}/paid">Read the premium article</a> (0.003 USD)</p>'
    return f"<!doctype html><title>WSGI example</title>\n{who}\n{body}\n"


def site(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") not in ("/", "/paid"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found\n"]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page(environ).encode()]


# Keys, session secret and base URL come from the SMALL_TRANSFERS_* environment variables.
app = SmallTransfersWSGI(site, pricing={"/paid": 3000})
