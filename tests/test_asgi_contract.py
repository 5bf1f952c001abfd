"""Protocol manners of the ASGI adapter: lifespan, websockets, streaming, the pooled client.

The contract rows shared with WSGI live in test_flows_common.py (run for both
adapters); here is what only ASGI has. Lifespan, websocket and streaming are
driven with hand-made scope/receive/send, as a server would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from helpers import (
    BROWSER,
    JSON,
    OTHER_SECRET,
    PRICE,
    SECRET,
    ASGISite,
    Calls,
    charges,
    new_customer,
    recording_asgi_app,
    sign_in,
)

pytestmark = pytest.mark.anyio

MakeSite = Callable[..., ASGISite]
Message = dict[str, Any]


@pytest.fixture
def kind() -> str:
    """Sites made in this module are ASGI sites."""
    return "asgi"


def http_scope(path: str, cookie: str = "", method: str = "GET") -> dict[str, Any]:
    headers = [(b"host", b"localhost"), (b"accept", BROWSER.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }


def jar_cookie(site: ASGISite) -> str:
    return "; ".join(f"{k}={v}" for k, v in site.jar.items())


async def no_more_requests() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class ClosingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting how often the pooled client closes it."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


# -- lifespan ----------------------------------------------------------------------------


class LifespanApp:
    """An app that handles lifespan itself and answers HTTP like the recording app."""

    def __init__(self) -> None:
        self.calls = Calls()
        self.http = recording_asgi_app(self.calls)
        self.lifespan_messages: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.http(scope, receive, send)
            return
        while True:
            message = await receive()
            self.lifespan_messages.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def test_lifespan_passes_through_and_shutdown_closes_the_pooled_client(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    app = LifespanApp()
    transport = ClosingTransport()
    site = make_site(app=app, transport=transport)
    to_app, from_server = anyio.create_memory_object_stream[Message](4)
    to_server, from_app = anyio.create_memory_object_stream[Message](4)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, to_app, from_server, to_server, from_app:
            tg.start_soon(site.mw, scope, from_server.receive, to_server.send)
            await to_app.send({"type": "lifespan.startup"})
            assert (await from_app.receive())["type"] == "lifespan.startup.complete"

            await sign_in(site, emu, customer)
            assert (await site.get("/paid")).status == 200
            assert transport.closed == 0

            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"

    assert app.lifespan_messages == ["lifespan.startup", "lifespan.shutdown"]
    assert transport.closed == 1
    assert len(app.calls) == 1
    assert [r.captured_micros for r in charges(emu, customer)] == [PRICE]


async def test_lifespan_works_before_any_request_was_made(make_site: MakeSite) -> None:
    app = LifespanApp()
    site = make_site(app=app)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await site.mw({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert app.lifespan_messages == ["lifespan.startup", "lifespan.shutdown"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_one_pooled_client_serves_every_request_of_a_loop(
    make_site: MakeSite, emu: Any, customer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site()  # its own test client is made before the count starts
    made: list[httpx.AsyncClient] = []

    class CountingClient(httpx.AsyncClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", CountingClient)
    await sign_in(site, emu, customer)
    for _ in range(3):
        assert (await site.get("/paid")).status == 200
    assert len(made) == 1
    await site.mw.aclose()
    assert made[0].is_closed


# -- streaming -----------------------------------------------------------------------------


class StreamingApp:
    """Streams three chunks; waits for the first to reach the client before the next,
    which only works if nothing between them buffers the body."""

    def __init__(self, capture: int | None = None) -> None:
        self.delivered = anyio.Event()
        self.capture = capture

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        charge = scope["smalltransfers.charge"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"chunk 0\n", "more_body": True})
        await self.delivered.wait()
        await send({"type": "http.response.body", "body": b"chunk 1\n", "more_body": True})
        if self.capture is not None and charge is not None:
            charge.capture_micros = self.capture
        await send({"type": "http.response.body", "body": b"chunk 2\n", "more_body": False})


STREAM_CASES = ["free", "paid", "paid, cookie resealed", "authorize-capture"]


@pytest.mark.parametrize("case", STREAM_CASES)
async def test_a_streamed_body_arrives_as_several_messages_without_buffering(
    make_site: MakeSite, emu: Any, customer: Any, case: str
) -> None:
    app = StreamingApp()
    options: dict[str, Any] = {"app": app}
    if case == "authorize-capture":
        options["charge_mode"] = "authorize-capture"
    if case == "paid, cookie resealed":
        options["session_secret"] = [OTHER_SECRET, SECRET]
    site = make_site(**options)
    cookie = ""
    if case != "free":
        signer = make_site(session_secret=SECRET) if "resealed" in case else site
        await sign_in(signer, emu, customer)
        cookie = jar_cookie(signer)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            app.delivered.set()

    path = "/free" if case == "free" else "/paid"
    with anyio.fail_after(10):  # a buffering middleware would deadlock the app
        await site.mw(http_scope(path, cookie), no_more_requests, send)

    start, *bodies = sent
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    assert [m["body"] for m in bodies] == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]
    assert [m.get("more_body", False) for m in bodies] == [True, True, False]
    set_cookies = [v for k, v in start["headers"] if k.lower() == b"set-cookie"]
    assert bool(set_cookies) == ("resealed" in case)
    assert len(charges(emu, customer)) == (0 if case == "free" else 1)


async def test_the_capture_is_what_the_app_set_while_streaming(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    app = StreamingApp(capture=1200)
    app.delivered.set()
    site = make_site(app=app, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await site.mw(http_scope("/paid", jar_cookie(site)), no_more_requests, send)
    (row,) = charges(emu, customer)
    assert (row.authorized_micros, row.captured_micros, row.state) == (PRICE, 1200, "captured")


async def test_a_stream_cut_short_by_the_visitor_captures_nothing(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    app = StreamingApp(capture=1200)  # the final amount would be known at the end only
    app.delivered.set()
    site = make_site(app=app, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    bodies = 0

    async def send(message: Message) -> None:
        nonlocal bodies
        if message["type"] == "http.response.body":
            bodies += 1
            if bodies == 2:
                raise OSError("the visitor hung up")

    with anyio.fail_after(10), pytest.raises(OSError, match="hung up"):
        await site.mw(http_scope("/paid", jar_cookie(site)), no_more_requests, send)
    (row,) = charges(emu, customer)
    assert row.captured_micros == 0


async def test_the_request_body_reaches_the_app_of_a_paid_post(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    site = make_site(app=app, pricing={"POST /upload": PRICE})
    await sign_in(site, emu, customer)

    async def upload() -> Any:
        for part in (b"the ", b"uploaded ", b"bytes"):
            yield part

    res = await site.client.post(
        "/upload", content=upload(), headers={"Cookie": jar_cookie(site), "Accept": JSON}
    )
    assert res.status_code == 200
    assert received == [b"the uploaded bytes"]
    assert [r.captured_micros for r in charges(emu, customer)] == [PRICE]


# -- async pricing ------------------------------------------------------------------------


async def test_an_async_pricing_callable_prices_requests(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    asked: list[tuple[str, str | None]] = []

    async def pricing(request: Any) -> int | None:
        await anyio.sleep(0)
        asked.append((request.path, request.customer.id if request.customer else None))
        return 2500 if request.path == "/metered" else None

    site = make_site(pricing=pricing)
    anonymous = await site.get("/metered", accept=JSON)
    assert anonymous.status == 401
    assert anonymous.json()["price_micros"] == 2500
    await sign_in(site, emu, customer)
    assert (await site.get("/metered")).status == 200
    assert site.calls.last.amount == 2500
    assert (await site.get("/free")).status == 200
    assert site.calls.last.charge is None
    assert asked[-2:] == [("/metered", customer.id), ("/free", customer.id)]
    assert [r.captured_micros for r in charges(emu, customer)] == [2500]


async def test_an_async_pricing_callable_object_prices_requests(
    make_site: MakeSite, emu: Any
) -> None:
    class Prices:
        async def __call__(self, request: Any) -> int:
            return 700

    site = make_site(pricing=Prices())
    buyer = new_customer(emu)
    await sign_in(site, emu, buyer)
    assert (await site.get("/anything")).status == 200
    assert [r.captured_micros for r in charges(emu, buyer)] == [700]


async def test_a_mount_without_the_prefix_in_path_still_finds_the_routes(
    make_site: MakeSite,
) -> None:
    # Some servers leave the mount prefix out of `path`; the routes must still match.
    site = make_site()
    scope = http_scope("/smalltransfers/sign-in") | {"root_path": "/app"}
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await site.mw(scope, no_more_requests, send)
    assert sent[0]["status"] == 303
    location = dict(sent[0]["headers"])[b"location"].decode()
    assert "redirect_uri=http%3A%2F%2Flocalhost%2Fapp%2Fsmalltransfers%2Fcallback" in location
