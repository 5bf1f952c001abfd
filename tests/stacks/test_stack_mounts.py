"""A wrapped app mounted in another keeps ``url_for`` working, under uvicorn.

Starlette resolves ``url_for`` from the outermost router down through each
``Mount``'s ``routes``; with the middleware between the mount and the shop,
those are the middleware's. Both shapes a merchant writes:
``Starlette(routes=[Mount("/shop", app=SmallTransfersASGI(shop))])`` (the
example ``examples/starlette_mounted.py``, under its documented command) and
``main.mount("/shop", SmallTransfersASGI(shop))`` in FastAPI
(``stack_mount_app.py``). No ``NoMatchFound``, the URL carries the mount
prefix and the server's origin, and a visit is charged once.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from stack_support import Served, Servers, Spec, documented_command, rows, uvicorn

from st_middleware import testing as kit
from st_middleware.emulator import Customer, Emulator

pytestmark = pytest.mark.slow

SIGN_IN = "/shop/smalltransfers/sign-in"


@pytest.fixture(scope="module")
def started(servers: Servers) -> dict[str, Served]:
    specs = [
        Spec("starlette", documented_command("examples/starlette_mounted.py"), ready="/"),
        Spec("fastapi", uvicorn("stack_mount_app:main")),
    ]
    return {served.spec.name: served for served in servers.start(*specs)}


def test_fastapi_mount_url_for_from_inside_and_outside_the_wrapped_shop(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started["fastapi"]
    paid_url = f"{server.origin}/shop/paid"
    with server.client() as client:
        assert client.get("/health").json() == {"shop_paid": paid_url}
        home = client.get("/shop/")
        assert home.status_code == 200, server.tail()
        assert home.json()["paid_url"] == paid_url
        assert home.json()["customer"] is None

        locked = client.get("/shop/paid")
        assert locked.status_code == 401
        assert urlsplit(locked.json()["sign_in_url"]).path == SIGN_IN

        start = client.get(SIGN_IN, params={"next": "/shop/paid"})
        redirect_uri = parse_qs(urlsplit(start.headers["location"]).query)["redirect_uri"]
        assert redirect_uri == [f"{server.origin}/shop/smalltransfers/callback"]
        kit.sign_in(client, st_emulator, st_customer, sign_in_path=SIGN_IN, next_path="/shop/paid")

        visit = client.get("/shop/paid")
    assert visit.status_code == 200, server.tail()
    assert visit.json() == {
        "paid_url": paid_url,
        "home_url": f"{server.origin}/shop/",
        "customer": st_customer.id,
        "charged": 3000,
    }
    assert rows(st_emulator, st_customer) == [("transaction", "captured", 3000)]


def test_starlette_mount_example_links_and_charges_once(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started["starlette"]
    paid_url = f"{server.origin}/shop/paid"
    with server.client() as client:
        site = client.get("/")  # the outer app's url_for("paid"), through the middleware
        assert site.status_code == 200, server.tail()
        assert f'href="{paid_url}"' in site.text
        shop = client.get("/shop/")  # inside the mount: url_for("paid")
        assert shop.status_code == 200, server.tail()
        assert f'href="{paid_url}"' in shop.text
        assert client.get("/shop/paid").status_code == 401

        kit.sign_in(client, st_emulator, st_customer, sign_in_path=SIGN_IN, next_path="/shop/paid")
        article = client.get("/shop/paid")
    assert article.status_code == 200, server.tail()
    assert "This visit cost 3000 micros." in article.text
    permalink = re.search(r'Permalink: <a href="([^"]*)">', article.text)
    assert permalink is not None
    assert unescape(permalink.group(1)) == paid_url
    assert rows(st_emulator, st_customer) == [("transaction", "captured", 3000)]
