"""FastAPI: a free page and a priced page (3000 micros = 0.003 USD per visit).

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/uvicorn examples.fastapi_app:app --port 8000

and open http://127.0.0.1:8000/ (behind a proxy that strips a prefix, add ``--root-path /app``).
"""  # noqa: E501

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from st_middleware import Charge, Customer, SmallTransfersASGI, customer_of

app = FastAPI()
# Keys, session secret and base URL come from the SMALL_TRANSFERS_* environment variables.
app.add_middleware(SmallTransfersASGI, pricing={"/paid": 3000})


def current_customer(request: Request) -> Customer | None:
    """The signed-in Small Transfers customer, or None: ``Depends(current_customer)``."""
    return customer_of(request)  # says so plainly if the app is served unwrapped


CurrentCustomer = Annotated[Customer | None, Depends(current_customer)]


def render(request: Request, customer: Customer | None, body: str) -> HTMLResponse:
    root = request.scope.get("root_path", "")  # the mount prefix, e.g. "/app"
    if customer is None:
        sign_in = f"{root}/smalltransfers/sign-in?next={quote(request.url.path)}"
        who = f'<p>Not signed in. <a href="{escape(sign_in)}">Sign in</a></p>'
    else:
        who = (
            f"<p>Signed in as {escape(customer.name)} ({escape(customer.email)}).</p>"
            f'<form method="post" action="{escape(root)}/smalltransfers/sign-out">'
            "<button>Sign out</button></form>"
        )
    return HTMLResponse(f"<!doctype html><title>FastAPI example</title>\n{who}\n{body}\n")


@app.get("/", response_class=HTMLResponse)
def home(request: Request, customer: CurrentCustomer) -> HTMLResponse:
    link = f'<a href="{escape(request.url_for("paid").path)}">Read the premium article</a>'
    return render(request, customer, f"<p>{link} (0.003 USD)</p>")


@app.get("/paid", response_class=HTMLResponse)
def paid(request: Request, customer: CurrentCustomer) -> HTMLResponse:
    charge: Charge = request.scope["smalltransfers.charge"]  # only reached once paid for
    body = f"<h1>Premium article</h1><p>This visit cost {charge.amount_micros} micros.</p>"
    return render(request, customer, body)
