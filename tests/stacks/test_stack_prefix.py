"""Apps that handle their own prefix: ``FastAPI(root_path="/api")`` under uvicorn.

Behind a proxy that forwards ``/api/...`` as it is (the app handles its own
prefix, like Datasette's ``base_url``), the middleware wraps FastAPI from
outside and sees the whole path, ``/api/paid``, with no ``root_path``: its
prices and its own routes are matched against that. By default its sign-in
link and ``redirect_uri`` then land outside the prefix, where the proxy
sends nothing to the app. The two fixes:

1. move the middleware's three paths under the prefix, and price the paths
   as the middleware sees them (``/api/paid``), the proxy unchanged;
2. serve with ``uvicorn --root-path /api`` behind a proxy that *strips*
   ``/api``: the middleware then knows the prefix and needs nothing else.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from stack_support import Served, Servers, Spec, StripPrefix, rows, uvicorn

from st_middleware import testing as kit
from st_middleware.emulator import Customer, Emulator

pytestmark = pytest.mark.slow

APP = "stack_prefix_app:app"
MOVED = {
    "sign_in_path": "/api/smalltransfers/sign-in",
    "callback_path": "/api/smalltransfers/callback",
    "sign_out_path": "/api/smalltransfers/sign-out",
}


@pytest.fixture(scope="module")
def started(servers: Servers) -> dict[str, Served]:
    specs = [
        # "/paid" as FastAPI routes it; "/api/report" as the middleware sees it.
        Spec("defaults", uvicorn(APP), {"pricing": {"/paid": 3000, "/api/report": 3000}}),
        Spec("moved-paths", uvicorn(APP), {"pricing": {"/api/paid": 3000}, **MOVED}),
        Spec("root-path", uvicorn(APP, "--root-path", "/api"), {"pricing": {"/paid": 3000}}),
    ]
    return {served.spec.name: served for served in servers.start(*specs)}


def redirect_uri(start: httpx.Response) -> str:
    assert start.status_code == 303, start.text
    return parse_qs(urlsplit(start.headers["location"]).query)["redirect_uri"][0]


def sign_in_link(locked: httpx.Response) -> tuple[str, list[str]]:
    """The path of the 401's ``sign_in_url``, and its ``next``."""
    assert locked.status_code == 401, locked.text
    link = urlsplit(locked.json()["sign_in_url"])
    return link.path, parse_qs(link.query)["next"]


def test_with_the_default_paths_sign_in_and_callback_land_outside_the_prefix(
    started: dict[str, Served],
) -> None:
    server = started["defaults"]
    with server.client() as client:  # the proxy forwards /api/... as it is
        # A price written as FastAPI routes the path never matches what the
        # middleware sees: the page is served, free.
        free = client.get("/api/paid")
        assert (free.status_code, free.json()["charged"]) == (200, None)

        # Priced as the middleware sees it, the page asks for a sign-in outside /api.
        link = sign_in_link(client.get("/api/report"))
        assert link == ("/smalltransfers/sign-in", ["/api/report"])
        start = client.get("/smalltransfers/sign-in", params={"next": "/api/report"})
    assert redirect_uri(start) == f"{server.origin}/smalltransfers/callback"


def test_fix_one_moves_the_three_paths_under_the_prefix(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started["moved-paths"]
    with server.client() as client:
        link = sign_in_link(client.get("/api/paid"))
        assert link == ("/api/smalltransfers/sign-in", ["/api/paid"])
        start = client.get(MOVED["sign_in_path"], params={"next": "/api/paid"})
        assert redirect_uri(start) == f"{server.origin}/api/smalltransfers/callback"

        where = {"sign_in_path": MOVED["sign_in_path"], "next_path": "/api/paid"}
        kit.sign_in(client, st_emulator, st_customer, **where)
        paid = client.get("/api/paid")
        assert paid.status_code == 200, server.tail()
        assert paid.json() == {
            "url": f"{server.origin}/api/paid",
            "customer": st_customer.id,
            "charged": 3000,
        }
        bye = client.post(MOVED["sign_out_path"], params={"next": "/api/paid"})
        assert (bye.status_code, bye.headers["location"]) == (303, "/api/paid")
        assert client.get("/api/paid").status_code == 401
    assert rows(st_emulator, st_customer) == [("transaction", "captured", 3000)]


def test_fix_two_serves_with_uvicorns_root_path_behind_a_stripping_proxy(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started["root-path"]
    proxy = StripPrefix("/api")
    with httpx.Client(base_url=server.origin, transport=proxy, timeout=30) as client:
        link = sign_in_link(client.get("/api/paid"))
        assert link == ("/api/smalltransfers/sign-in", ["/api/paid"])
        start = client.get("/api/smalltransfers/sign-in", params={"next": "/api/paid"})
        assert redirect_uri(start) == f"{server.origin}/api/smalltransfers/callback"

        kit.sign_in(
            client,
            st_emulator,
            st_customer,
            sign_in_path="/api/smalltransfers/sign-in",
            next_path="/api/paid",
        )
        paid = client.get("/api/paid")
        assert paid.status_code == 200, server.tail()
        assert paid.json() == {
            "url": f"{server.origin}/api/paid",
            "customer": st_customer.id,
            "charged": 3000,
        }
    assert rows(st_emulator, st_customer) == [("transaction", "captured", 3000)]

    # --root-path means "the proxy stripped it": sent as it is, /api/paid
    # reaches FastAPI as /api/api/paid, which nothing serves (nor charges).
    with server.client() as direct:
        assert direct.get("/api/paid").status_code == 404
    assert kit.charges(st_emulator, st_customer) == [3000]
