"""Starlette: a free page and a priced page (3000 micros = 0.003 USD per visit).

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/uvicorn examples.starlette_app:app --port 8000

and open http://127.0.0.1:8000/ (behind a proxy that strips a prefix, add ``--root-path /app``).
"""  # noqa: E501

from __future__ import annotations

from html import escape
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from st_middleware import SmallTransfersASGI, customer_of


def render(request: Request, body: str) -> HTMLResponse:
    root = request.scope.get("root_path", "")  # the mount prefix, e.g. "/app"
    customer = customer_of(request)
    if customer is None:
        sign_in = f"{root}/smalltransfers/sign-in?next={quote(request.url.path)}"
        who = f'<p>Not signed in. <a href="{escape(sign_in)}">Sign in</a></p>'
    else:
        who = (
            f"<p>Signed in as {escape(customer.name)} ({escape(customer.email)}).</p>"
            f'<form method="post" action="{escape(root)}/smalltransfers/sign-out">'
            "<button>Sign out</button></form>"
        )
    return HTMLResponse(f"<!doctype html><title>Starlette example</title>\n{who}\n{body}\n")


async def home(request: Request) -> HTMLResponse:
    link = f'<a href="{escape(request.url_for("paid").path)}">Read the premium article</a>'
    return render(request, f"<p>{link} (0.003 USD)</p>")


async def paid(request: Request) -> HTMLResponse:
    micros = request.scope["smalltransfers.charge"].amount_micros  # only reached once paid
    return render(request, f"<h1>Premium article</h1><p>This visit cost {micros} micros.</p>")


app = Starlette(
    routes=[Route("/", home), Route("/paid", paid)],
    # Keys, session secret and base URL come from the SMALL_TRANSFERS_* environment variables.
    middleware=[Middleware(SmallTransfersASGI, pricing={"/paid": 3000})],
)
