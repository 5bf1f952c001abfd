"""The demo shop: a bare WSGI app with free and paid pages, wrapped by SmallTransfersWSGI.

Nothing in the handlers deals with payment: prices live in ``PRICES``, the
middleware charges before a paid handler runs and hands it the customer and
the charge through the environ. The sign-in button is the middleware's own
(``sign_in_button``), so the shop's pages and the middleware's show the same one.
"""

from __future__ import annotations

import html
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from st_middleware import (
    FAVICON_LINK,
    FAVICON_SVG,
    SIGN_IN_BUTTON_CSS,
    Charge,
    Customer,
    Price,
    SmallTransfersWSGI,
    format_micros,
    sign_in_button,
)
from st_middleware.observability import prometheus

SHOP_NAME = "Micro Shop"
WORD_MICROS = 200  # the "essay" bills 0.0002 USD per word actually written
WORD_DELAY = 0.08  # seconds between the essay's words, so one sees it stream

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

# The essay never writes more than WORDS, so this is all it can cost: authorizing more
# would hold money it can never use, and a customer with enough left for the essay
# would meet the spending-limit page all the same.
ESSAY_MAX_MICROS = len(WORDS) * WORD_MICROS
ESSAY_PRICE_TEXT = (
    f"{format_micros(WORD_MICROS)} per word written, at most {format_micros(ESSAY_MAX_MICROS)}"
)

PRICES: dict[str, int | Price] = {
    "/joke": 1_000,  # 0.001 USD
    "/fortune": 3_000,  # 0.003 USD
    "/api/quote": 500,
    # Usage-based: authorize what the longest essay costs, capture what was really written.
    "/essay": Price(ESSAY_MAX_MICROS, mode="authorize-capture"),
}

StartResponse = Callable[..., Any]

_STYLE = (
    """
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f5f7fa;color:#1f2933}
main{max-width:640px;margin:40px auto;background:#fff;border-radius:8px;padding:28px 32px;
box-shadow:0 1px 3px rgba(0,0,0,.12);overflow-wrap:break-word}
h1{margin-top:0;font-size:1.6rem}
nav{display:flex;flex-wrap:wrap;gap:4px 16px}
.who{background:#eef4fb;border-radius:6px;padding:10px 14px;margin:16px 0}
.sign-in{margin:0 0 16px}
.cost{color:#52606d;font-size:.9rem}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px 4px;
border-bottom:1px solid #e4e7eb;vertical-align:top}
button{font:inherit;padding:6px 14px;border-radius:4px;border:1px solid #9aa5b1;
background:#fff;cursor:pointer}
@media (max-width:640px){main{margin:0;border-radius:0;padding:20px 16px;box-shadow:none}}
"""
    + SIGN_IN_BUTTON_CSS
)


def _title(title: str) -> str:
    return SHOP_NAME if title == SHOP_NAME else f"{title} · {SHOP_NAME}"


def _head(title: str, environ: dict[str, Any]) -> str:
    """The page up to its heading: the essay streams the rest."""
    customer: Customer | None = environ["smalltransfers.customer"]
    root = environ.get("SCRIPT_NAME", "")
    dashboard = environ["demo.emulator_url"] + "/customer/dashboard"
    if customer is None:
        # Below the box, not in it: at 390 px its label then keeps to one line.
        who = (
            '<div class="who">Not signed in.</div><p class="sign-in">'
            f"{sign_in_button(f'{root}/smalltransfers/sign-in?next={root}/')}</p>"
        )
    else:
        who = (
            f'<div class="who">Signed in as <b>{html.escape(customer.name or customer.id)}</b> '
            f"({html.escape(customer.email)}{'' if customer.live else ', test mode'}). "
            f'<form method="post" action="{root}/smalltransfers/sign-out?next={root}/" '
            'style="display:inline"><button>Sign out</button></form> '
            f'<a href="{html.escape(dashboard)}">Your Small Transfers dashboard</a></div>'
        )
    nav = (
        f'<nav><a href="{root}/">Home</a><a href="{root}/joke">Joke</a>'
        f'<a href="{root}/fortune">Fortune</a><a href="{root}/essay">Essay</a></nav>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">{FAVICON_LINK}'
        f"<title>{html.escape(_title(title))}</title><style>{_STYLE}</style></head>"
        f"<body><main>{nav}{who}<h1>{html.escape(title)}</h1>"
    )


_TAIL = "</main></body></html>"


def _page(title: str, body: str, environ: dict[str, Any]) -> bytes:
    return (_head(title, environ) + body + _TAIL).encode()


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
            f"<td>{ESSAY_PRICE_TEXT if p == '/essay' else format_micros(_micros(v))}</td></tr>"
            for p, v in PRICES.items()
        )
        body = (
            "<p>Every page below is paid per visit through Small Transfers "
            "(this demo runs against the local emulator: no real money).</p>"
            f"<table><tr><th>Page</th><th>Price per request</th></tr>{rows}</table>"
            "<p>Try it: sign in, open a joke a few times, then watch your spending on the "
            "dashboard. The demo customer has a 0.01 USD limit, so you will meet the "
            "spending-limit page soon: raise the limit on the dashboard and read on. Revoke "
            "access there and the shop asks you to sign in again at its next charge.</p>"
            + _cost(charge)
        )
        return _html(start_response, _page(SHOP_NAME, body, environ))
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
        return _essay(charge, environ)
    if path == "/favicon.ico":
        # The pages carry the icon inline; this is for browsers that ask anyway.
        start_response("200 OK", [("Content-Type", "image/svg+xml")])
        return [FAVICON_SVG]
    return _html(
        start_response, _page("Not found", "<p>No such page.</p>", environ), "404 Not Found"
    )


def _micros(price: int | Price) -> int:
    return price.micros if isinstance(price, Price) else price


def _essay(charge: Charge | None, environ: dict[str, Any]) -> Iterator[bytes]:
    """Streams words one by one and bills per word written (authorize-capture)."""
    yield (_head("A streamed essay", environ) + "<p>").encode()
    count = random.randint(12, len(WORDS))
    for written, word in enumerate(WORDS[:count], 1):
        time.sleep(WORD_DELAY)
        yield (word + " ").encode()
        if charge is not None:
            # Set as we go: whatever was written is what the visitor pays.
            charge.capture_micros = written * WORD_MICROS
    cost = format_micros(count * WORD_MICROS)
    authorized = format_micros(charge.authorized_micros if charge else 0)
    yield (
        f'</p><p class="cost">{count} words: you pay {cost} ({ESSAY_PRICE_TEXT}). '
        f"{authorized} was authorized up front, the most an essay can cost; only what "
        f"was written is captured, once the page has finished.</p>{_TAIL}"
    ).encode()


def make_app(
    *, emulator_url: str, publishable_key: str, secret_key: str, session_secret: str
) -> SmallTransfersWSGI:
    """The shop wrapped by the middleware, pointed at a Small Transfers (the emulator).

    ``/metrics`` serves what the middleware counted, as Prometheus scrapes it.
    """
    # The shop's own registry: each app made here counts only its own charges.
    registry = CollectorRegistry()

    def with_emulator_url(
        environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":
            # Free (not in PRICES). A real shop serves this on a port only Prometheus reaches.
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(registry)]
        environ["demo.emulator_url"] = emulator_url
        return shop(environ, start_response)

    return SmallTransfersWSGI(
        with_emulator_url,
        publishable_key=publishable_key,
        secret_key=secret_key,
        session_secret=session_secret,
        base_url=emulator_url,
        pricing=PRICES,
        observers=[prometheus(registry)],
    )
