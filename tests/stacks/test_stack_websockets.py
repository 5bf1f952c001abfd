"""Websockets are priced like any path, under real servers with a real websocket client.

The contract: a websocket scope gets ``smalltransfers.customer`` like an HTTP
one; a priced websocket path without a session is refused before the app
sees it (``websocket.http.response`` with a 401 where the server supports the
extension, else ``websocket.close`` 1008, which the server turns into a 403);
a signed-in one is charged once per connection, at the handshake, before the
app accepts it.

``stack_ws_app.py`` (FastAPI, ``/paid/*`` at 1000 micros, ``/metered/*``
authorize-capture up to 5000) runs under uvicorn, hypercorn and daphne; the
session cookie comes from signing in over HTTP against the same server with
the testing kit. ``examples/fastapi_websocket.py`` runs under the command its
docstring documents.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from stack_support import (
    Served,
    Servers,
    Spec,
    captured_row,
    daphne,
    documented_command,
    hypercorn,
    rows,
    session_cookie,
    uvicorn,
    wait_for,
)
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from st_middleware import testing as kit
from st_middleware.emulator import Customer, Emulator

pytestmark = pytest.mark.slow

APP = "stack_ws_app:app"
#: What each server answers a refused handshake: 401 through the
#: websocket.http.response extension; daphne lacks it, so the middleware
#: closes with 1008 before accepting, which daphne answers with a 403.
REFUSED = {"uvicorn": 401, "hypercorn": 401, "daphne": 403}
EXAMPLE = "examples/fastapi_websocket.py"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def started(servers: Servers) -> dict[str, Served]:
    specs = [
        Spec("uvicorn", uvicorn(APP)),
        Spec("hypercorn", hypercorn(APP)),
        Spec("daphne", daphne(APP)),
        Spec("example", documented_command(EXAMPLE), ready="/"),
    ]
    return {served.spec.name: served for served in servers.start(*specs)}


@pytest.fixture(params=sorted(REFUSED))
def server(request: pytest.FixtureRequest, started: dict[str, Served]) -> Served:
    return started[request.param]


def ws(server: Served, path: str, cookie: str = "") -> ClientConnection:
    url = server.origin.replace("http://", "ws://") + path
    headers = {"Cookie": cookie} if cookie else None
    return connect(url, additional_headers=headers, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def signed_in(server: Served, emu: Emulator, customer: Customer) -> str:
    """Sign in over HTTP against the same server; the ``Cookie`` value for the websocket."""
    with server.client() as client:
        kit.sign_in(client, emu, customer)
        # On http://127.0.0.1 the cookie is neither Secure nor __Host- prefixed.
        return session_cookie(client, "st_session")


def runs(server: Served) -> list[dict[str, Any]]:
    """What the app's handlers recorded as they started (the app's own side channel)."""
    answer = httpx.get(server.origin + "/probe/runs", timeout=TIMEOUT)
    assert answer.status_code == 200, server.tail()
    records: list[dict[str, Any]] = answer.json()
    return records


def first(connection: ClientConnection) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(connection.recv(timeout=TIMEOUT))
    return record


@pytest.mark.parametrize("path", ["/paid/ws", "/metered/ws"])
def test_an_anonymous_handshake_on_a_priced_path_is_refused_before_the_handler_runs(
    server: Served, path: str
) -> None:
    before = len(runs(server))
    with pytest.raises(InvalidStatus) as refused:
        ws(server, path)
    response = refused.value.response
    assert response.status_code == REFUSED[server.spec.name], server.tail()
    if response.status_code == 401:
        # Through the extension the client gets the middleware's real answer.
        problem = json.loads(bytes(response.body or b""))
        assert problem["code"] == "sign_in_required"
        sign_in_url = urlsplit(problem["sign_in_url"])
        assert sign_in_url.path == "/smalltransfers/sign-in"
        # A browser cannot come back to a socket: signing in returns to the site's home.
        assert parse_qs(sign_in_url.query)["next"] == ["/"]
    assert len(runs(server)) == before, "a handler ran for a refused handshake"


def test_a_signed_in_visitor_is_charged_once_per_connection_before_the_handler_accepts(
    server: Served, st_emulator: Emulator, st_customer: Customer
) -> None:
    cookie = signed_in(server, st_emulator, st_customer)
    assert rows(st_emulator, st_customer) == [], "signing in charged"

    with ws(server, "/paid/ws", cookie) as connection:
        run = first(connection)
        for text in ("one", "two", "three"):  # messages are not charged
            connection.send(text)
            assert connection.recv(timeout=TIMEOUT) == f"echo: {text}"

    assert run["customer"] == st_customer.id
    assert run["mode"] == "transaction"
    assert run["amount_micros"] == 1000
    [row] = kit.ledger(st_emulator, st_customer)
    assert (row.kind, row.state, row.captured_micros) == ("transaction", "captured", 1000)
    # The handler held the charge's id before accepting: the charge was made
    # (and answered by Small Transfers) before the app was called at all.
    assert row.id == run["charge_id"]
    assert row.created_at <= run["before_accept"]

    with ws(server, "/paid/ws", cookie) as connection:
        assert first(connection)["charge_id"] != row.id
    assert kit.charges(st_emulator, st_customer) == [1000, 1000], "one charge per connection"


def test_the_free_path_gets_the_customer_and_charges_nothing(
    server: Served, st_emulator: Emulator, st_customer: Customer
) -> None:
    with ws(server, "/free/ws") as connection:
        anonymous = first(connection)
    assert (anonymous["customer"], anonymous["charge_id"]) == (None, None)

    cookie = signed_in(server, st_emulator, st_customer)
    with ws(server, "/free/ws", cookie) as connection:
        known = first(connection)
    assert (known["customer"], known["charge_id"]) == (st_customer.id, None)
    assert rows(st_emulator, st_customer) == []


def test_authorize_capture_captures_once_what_the_handler_set(
    server: Served, st_emulator: Emulator, st_customer: Customer
) -> None:
    cookie = signed_in(server, st_emulator, st_customer)
    with ws(server, "/metered/ws", cookie) as connection:
        run = first(connection)
        assert run["mode"] == "authorize-capture"
        [authorized] = kit.ledger(st_emulator, st_customer)
        assert (authorized.state, authorized.authorized_micros) == ("authorized", 5000)
        connection.send("1234")  # the handler sets capture_micros = 1234 and closes
        with pytest.raises(ConnectionClosedOK):
            connection.recv(timeout=TIMEOUT)
        assert connection.close_code == 1000

    row = captured_row(st_emulator, st_customer)
    assert (row.id, row.kind, row.captured_micros) == (run["charge_id"], "charge", 1234)
    assert row.authorized_micros == 5000
    assert kit.charges(st_emulator, st_customer) == [1234]


# -- the example -----------------------------------------------------------------------------


def test_the_example_refuses_anonymous_charges_per_connection_and_meters_messages(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    example = started["example"]
    with pytest.raises(InvalidStatus) as refused:
        ws(example, "/paid/ws")
    assert refused.value.response.status_code == 401  # uvicorn, as documented

    cookie = signed_in(example, st_emulator, st_customer)
    with ws(example, "/paid/ws", cookie) as connection:
        greeting = str(connection.recv(timeout=TIMEOUT))
        connection.send("hello")
        assert connection.recv(timeout=TIMEOUT) == "echo: hello"
    assert greeting == f"Hello Test {st_customer.last_name}: this connection cost 1000 micros."
    assert rows(st_emulator, st_customer) == [("transaction", "captured", 1000)]

    with ws(example, "/metered/ws", cookie) as connection:
        for text in ("a", "b", "c"):
            connection.send(text)
            assert str(connection.recv(timeout=TIMEOUT)).startswith(text.upper())
    # Three messages answered, 1000 micros each, captured once the socket closed.
    wanted = [("transaction", "captured", 1000), ("charge", "captured", 3000)]

    def settled() -> bool:
        return rows(st_emulator, st_customer) == wanted

    wait_for(settled, TIMEOUT, f"the metered capture (ledger: {rows(st_emulator, st_customer)})")

    with ws(example, "/free/ws", cookie) as connection:
        assert connection.recv(timeout=TIMEOUT) == (
            f"Hello Test {st_customer.last_name}, this one is free."
        )
    assert kit.charges(st_emulator, st_customer) == [1000, 3000]


def test_a_plain_get_of_a_priced_websocket_path_is_charged_though_only_a_websocket_is_served(
    started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    """Where the refusal's ``sign_in_url`` leads a browser back to, in transaction mode.

    Rules match paths, and a handshake is a GET: an HTTP GET of ``/paid/ws``
    is priced like the handshake, so it is charged before the app runs, and
    FastAPI, which routes that path for websockets only, answers 404.
    Authorize-capture (``/metered/*``) captures nothing for that 404.
    """
    server = started["uvicorn"]
    cookie = signed_in(server, st_emulator, st_customer)
    with server.client(headers={"Cookie": cookie}) as client:
        assert client.get("/paid/ws").status_code == 404
        assert client.get("/metered/ws").status_code == 404
    assert rows(st_emulator, st_customer)[0] == ("transaction", "captured", 1000)
    assert kit.charges(st_emulator, st_customer) == [1000], "the metered 404 was captured"
