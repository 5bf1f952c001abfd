"""Starlette: a paid shop mounted at /shop inside a bigger site; ``url_for`` works through the mount.

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/uvicorn examples.starlette_mounted:app --port 8000

and open http://127.0.0.1:8000/ (the site, free) and http://127.0.0.1:8000/shop/paid
(0.003 USD a visit).

Only the shop is wrapped: the site around it never talks to Small Transfers.
Prices are written as the shop's own routes see them (``/paid``, not
``/shop/paid``); the middleware's routes live inside the mount too
(``/shop/smalltransfers/sign-in``...). Starlette's ``url_for`` finds the shop's
routes through the middleware, from inside the shop and from the site around
it alike (``url_for("paid")``: the mount has no name, so the shop's route names
are the site's; with ``Mount(..., name="shop")`` both write ``"shop:paid"``).
"""  # noqa: E501

from __future__ import annotations

from html import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from st_middleware import SmallTransfersASGI, charge_of, customer_of


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>{escape(title)}</title>\n{body}\n")


async def site_home(request: Request) -> HTMLResponse:
    shop = escape(str(request.url_for("home")))
    article = escape(str(request.url_for("paid")))
    return page(
        "Mounted shop example",
        f'<p>Welcome. Visit <a href="{shop}">the shop</a>, or go straight to '
        f'<a href="{article}">its premium article</a> (0.003 USD).</p>',
    )


def who(request: Request) -> str:
    root = escape(request.scope.get("root_path", ""))  # "/shop": the mount prefix
    customer = customer_of(request)
    if customer is None:
        sign_in = f"{root}/smalltransfers/sign-in?next={root}/"
        return f'<p>Not signed in. <a href="{sign_in}">Sign in</a></p>'
    return (
        f"<p>Signed in as {escape(customer.name)} ({escape(customer.email)}).</p>"
        f'<form method="post" action="{root}/smalltransfers/sign-out">'
        "<button>Sign out</button></form>"
    )


async def shop_home(request: Request) -> HTMLResponse:
    article = escape(str(request.url_for("paid")))  # absolute, mount prefix included
    return page("Shop", f'{who(request)}\n<p><a href="{article}">Read the premium article</a></p>')


async def paid(request: Request) -> HTMLResponse:
    charge = charge_of(request)  # only reached once paid for
    assert charge is not None
    permalink = escape(str(request.url_for("paid")))
    return page(
        "Premium article",
        f"{who(request)}\n<h1>Premium article</h1>"
        f"<p>This visit cost {charge.amount_micros} micros.</p>"
        f'<p>Permalink: <a href="{permalink}">{permalink}</a></p>',
    )


shop = Starlette(routes=[Route("/", shop_home, name="home"), Route("/paid", paid, name="paid")])

app = Starlette(
    routes=[
        Route("/", site_home),
        # Keys, session secret and base URL come from the SMALL_TRANSFERS_* environment variables.
        Mount("/shop", app=SmallTransfersASGI(shop, pricing={"/paid": 3000})),
    ]
)
