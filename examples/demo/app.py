"""The demo shop: a bare WSGI app with free and paid pages, wrapped by SmallTransfersWSGI.

Nothing in the handlers deals with payment: prices live in ``PRICES``, the
middleware charges before a paid handler runs and hands it the customer and
the charge through the environ.
"""

from __future__ import annotations

import html
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from st_middleware import Charge, Customer, Price, SmallTransfersWSGI, format_micros

WORD_MICROS = 200  # the "essay" bills 0.0002 USD per word actually written

PRICES: dict[str, int | Price] = {
    "/joke": 1_000,  # 0.001 USD
    "/fortune": 3_000,  # 0.003 USD
    "/api/quote": 500,
    # Usage-based: authorize up to 0.01 USD, capture what was really produced.
    "/essay": Price(10_000, mode="authorize-capture"),
}

JOKES = [
    "I told my wallet a joke about micropayments. It only laughed a little.",
    "Why did the cent cross the road? It was spent.",
    "A micro walks into a bar. The barman says: we do not serve fractions here. It pays anyway.",
    "My budget is like a cookie: HttpOnly, and gone by the end of the session.",
]
FORTUNES = [
    "A small transfer today saves a large invoice tomorrow.",
    "You will pay exactly what you use, and not a micro more.",
    "Good things come to those who authorize, then capture.",
]
WORDS = [
    "payments",
    "on",
    "the",
    "web",
    "were",
    "always",
    "too",
    "big",
    "for",
    "small",
    "things",
    "so",
    "people",
    "built",
    "ads",
    "and",
    "paywalls",
    "instead",
    "and",
    "now",
    "a",
    "page",
    "can",
    "simply",
    "cost",
    "a",
    "fraction",
    "of",
    "a",
    "cent",
    "which",
    "changes",
    "what",
    "is",
    "worth",
    "making",
]

StartResponse = Callable[..., Any]

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f5f7fa;color:#1f2933}
main{max-width:640px;margin:40px auto;background:#fff;border-radius:8px;padding:28px 32px;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{margin-top:0;font-size:1.6rem}
nav a{margin-right:14px}
.who{background:#eef4fb;border-radius:6px;padding:10px 14px;margin:16px 0}
.cost{color:#52606d;font-size:.9rem}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px 4px;
border-bottom:1px solid #e4e7eb}
button{font:inherit;padding:6px 14px;border-radius:4px;border:1px solid #9aa5b1;
background:#fff;cursor:pointer}
a.btn{display:inline-block;background:#1976d2;color:#fff;padding:8px 22px;border-radius:4px;
text-decoration:none;font-weight:500}
"""


def _page(title: str, body: str, environ: dict[str, Any]) -> bytes:
    customer: Customer | None = environ["smalltransfers.customer"]
    root = environ.get("SCRIPT_NAME", "")
    dashboard = environ["demo.emulator_url"] + "/customer/dashboard"
    if customer is None:
        who = (
            f'Not signed in. <a class="btn" href="{root}/smalltransfers/sign-in?next={root}/">'
            "Sign In with Small Transfers</a>"
        )
    else:
        who = (
            f"Signed in as <b>{html.escape(customer.name or customer.id)}</b> "
            f"({html.escape(customer.email)}{'' if customer.live else ', test mode'}). "
            f'<form method="post" action="{root}/smalltransfers/sign-out?next={root}/" '
            'style="display:inline"><button>Sign out</button></form> '
            f'<a href="{html.escape(dashboard)}">Your Small Transfers dashboard</a>'
        )
    nav = (
        f'<nav><a href="{root}/">Home</a><a href="{root}/joke">Joke</a>'
        f'<a href="{root}/fortune">Fortune</a><a href="{root}/essay">Essay</a></nav>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)} · Micro Shop</title><style>{_STYLE}</style></head>"
        f'<body><main>{nav}<div class="who">{who}</div><h1>{html.escape(title)}</h1>'
        f"{body}</main></body></html>"
    ).encode()


def _cost(charge: Charge | None) -> str:
    if charge is None:
        return '<p class="cost">This page is free.</p>'
    return f'<p class="cost">This request cost {format_micros(charge.amount_micros)}.</p>'


def _html(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/html; charset=utf-8")])
    return [body]


def shop(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The merchant's app, free of payment code."""
    path = environ.get("PATH_INFO") or "/"
    charge: Charge | None = environ["smalltransfers.charge"]
    if path == "/":
        rows = "".join(
            f'<tr><td><a href="{environ.get("SCRIPT_NAME", "")}{p}">{p}</a></td>'
            f"<td>{format_micros(v.micros if isinstance(v, Price) else v)}"
            f"{' at most, billed per word' if isinstance(v, Price) else ''}</td></tr>"
            for p, v in PRICES.items()
        )
        body = (
            "<p>Every page below is paid per visit through Small Transfers "
            "(this demo runs against the local emulator: no real money).</p>"
            f"<table><tr><th>Page</th><th>Price per request</th></tr>{rows}</table>"
            "<p>Try it: sign in, open a joke a few times, then watch your spending on the "
            "dashboard. The demo customer has a 0.01 USD limit, so you will meet the "
            "spending-limit page soon; revoke access on the dashboard and the shop asks you "
            "to sign in again.</p>" + _cost(charge)
        )
        return _html(start_response, _page("Micro Shop", body, environ))
    if path == "/joke":
        body = f"<blockquote>{html.escape(random.choice(JOKES))}</blockquote>{_cost(charge)}"
        return _html(start_response, _page("A joke", body, environ))
    if path == "/fortune":
        body = f"<blockquote>{html.escape(random.choice(FORTUNES))}</blockquote>{_cost(charge)}"
        return _html(start_response, _page("Your fortune", body, environ))
    if path == "/api/quote":
        data = {
            "quote": random.choice(FORTUNES),
            "cost_micros": charge.amount_micros if charge else 0,
        }
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(data).encode()]
    if path == "/essay":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return _essay(charge)
    return _html(
        start_response, _page("Not found", "<p>No such page.</p>", environ), "404 Not Found"
    )


def _essay(charge: Charge | None) -> Iterator[bytes]:
    """Streams words one by one and bills per word written (authorize-capture)."""
    yield b"<!doctype html><meta charset=utf-8><title>Essay</title><body style='font:18px system-ui;max-width:640px;margin:40px auto'><h1>A streamed essay</h1><p>"  # noqa: E501
    count = random.randint(12, len(WORDS))
    for written, word in enumerate(WORDS[:count], 1):
        time.sleep(0.08)
        yield (word + " ").encode()
        if charge is not None:
            # Set as we go: whatever was written is what the visitor pays.
            charge.capture_micros = written * WORD_MICROS
    cost = format_micros(count * WORD_MICROS)
    authorized = format_micros(charge.authorized_micros) if charge else "0"
    yield (
        f"</p><p style='color:#52606d'>{count} words: you pay {cost} "
        f"(authorized up to {authorized}; captured after this page finished).</p>"
        "<p><a href='/'>Home</a></p></body>"
    ).encode()


def make_app(
    *, emulator_url: str, publishable_key: str, secret_key: str, session_secret: str
) -> SmallTransfersWSGI:
    """The shop wrapped by the middleware, pointed at a Small Transfers (the emulator)."""

    def with_emulator_url(
        environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        environ["demo.emulator_url"] = emulator_url
        return shop(environ, start_response)

    return SmallTransfersWSGI(
        with_emulator_url,
        publishable_key=publishable_key,
        secret_key=secret_key,
        session_secret=session_secret,
        base_url=emulator_url,
        pricing=PRICES,
    )
