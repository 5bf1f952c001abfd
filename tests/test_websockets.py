"""Websockets: the customer in every scope, priced handshakes charged once or refused.

Driven with hand-made scopes and messages, as a server would; the same under
real servers (uvicorn, hypercorn) with a real websocket client is in
tests/stacks/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from helpers import PRICE, ASGISite, charges, sign_in

pytestmark = pytest.mark.anyio

MakeSite = Callable[..., ASGISite]
Message = dict[str, Any]


@pytest.fixture
def kind() -> str:
    return "asgi"


def ws_scope(path: str, cookie: str = "", *, extension: bool = True) -> dict[str, Any]:
    headers = [(b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
        "subprotocols": [],
    }
    if extension:
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


class Echo:
    """A websocket app that accepts, says who it serves, and closes; records what it saw."""

    def __init__(self, emu: Any = None, customer: Any = None) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.ledger_at_accept: list[int] = []
        self.emu, self.customer = emu, customer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        if self.emu is not None:
            self.ledger_at_accept.append(len(charges(self.emu, self.customer)))
        charge = scope["smalltransfers.charge"]
        if charge is not None and charge.mode == "authorize-capture":
            charge.capture_micros = 1234
        await send({"type": "websocket.accept"})
        who = getattr(scope["smalltransfers.customer"], "id", "nobody")
        await send({"type": "websocket.send", "text": who})
        await send({"type": "websocket.close", "code": 1000})


async def run(site: ASGISite, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await site.mw(scope, receive, send)
    return sent


def jar(site: ASGISite) -> str:
    return "; ".join(f"{k}={v}" for k, v in site.jar.items())


async def test_a_priced_handshake_without_a_session_gets_a_401(make_site: MakeSite) -> None:
    app = Echo()
    site = make_site(app=app)
    sent = await run(site, ws_scope("/paid"))
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    assert sent[1]["type"] == "websocket.http.response.body"
    problem = json.loads(sent[1]["body"])
    assert problem["code"] == "sign_in_required"
    # A browser cannot come back to a socket: signing in returns to the site's home.
    assert problem["sign_in_url"].endswith("/smalltransfers/sign-in?next=%2F")
    assert app.scopes == []


async def test_without_the_extension_it_is_closed_with_1008(make_site: MakeSite) -> None:
    app = Echo()
    site = make_site(app=app)
    sent = await run(site, ws_scope("/paid", "st_session=garbage", extension=False))
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert app.scopes == []


async def test_a_free_websocket_gets_the_customer_in_a_copy_of_its_scope(
    make_site: MakeSite,
) -> None:
    app = Echo()
    site = make_site(app=app)
    scope = ws_scope("/free")
    before = dict(scope)
    sent = await run(site, scope)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "nobody"
    (seen,) = app.scopes
    assert seen["smalltransfers.customer"] is None
    assert seen["smalltransfers.charge"] is None
    assert seen is not scope
    assert scope == before  # the server's scope is left as it was


async def test_a_signed_in_websocket_is_charged_once_before_the_app_accepts(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    app = Echo(emu, customer)
    site = make_site(app=app)
    await sign_in(site, emu, customer)
    sent = await run(site, ws_scope("/paid", jar(site)))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == customer.id
    assert app.ledger_at_accept == [1]  # charged at the handshake, before accepting
    assert [row.captured_micros for row in charges(emu, customer)] == [PRICE]
    assert app.scopes[0]["smalltransfers.charge"].amount_micros == PRICE


async def test_a_signed_in_free_websocket_knows_its_customer(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    app = Echo()
    site = make_site(app=app)
    await sign_in(site, emu, customer)
    sent = await run(site, ws_scope("/free", jar(site)))
    assert sent[1]["text"] == customer.id
    assert charges(emu, customer) == []


async def test_authorize_capture_captures_when_the_connection_ends(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(app=Echo(), charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    await run(site, ws_scope("/paid", jar(site)))
    assert [row.captured_micros for row in charges(emu, customer)] == [1234]


async def test_a_connection_the_app_refuses_is_not_captured(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    site = make_site(app=refuse, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    await run(site, ws_scope("/paid", jar(site)))
    (row,) = charges(emu, customer)
    assert row.state == "authorized"
    assert row.captured_micros in (None, 0)


async def test_a_refused_charge_refuses_the_handshake(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    app = Echo()
    site = make_site(app=app)
    await sign_in(site, emu, customer)
    emu.set_faults(error="charge_limit_exceeded", count=1)
    sent = await run(site, ws_scope("/paid", jar(site)))
    assert sent[0]["status"] == 402
    assert app.scopes == []


async def test_lifespan_still_passes_through_untouched(make_site: MakeSite) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    site = make_site(app=app)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    await site.mw(scope, receive, send)
    assert seen == [scope]
    assert seen[0] is scope
