"""Authorize-then-capture: the app decides what is captured, after its response is sent."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import webtest

from st_middleware import ChargeEvent, Price, SmallTransfersASGI, SmallTransfersWSGI
from st_middleware.emulator import Customer as EmuCustomer
from st_middleware.emulator import Emulator
from st_middleware.testing import (
    async_signed_in_client,
    emulator_options,
    ledger,
    sign_in,
    signed_in_client,
)

AUTHORIZED = 10_000


def streaming_wsgi(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """Streams three chunks and asks for 1000 micros per chunk, as a token-priced AI would."""
    charge = environ["smalltransfers.charge"]
    status = environ.get("HTTP_X_STATUS", "200 OK")
    start_response(status, [("Content-Type", "text/plain")])
    if environ.get("HTTP_X_RAISE"):
        raise RuntimeError("model crashed")
    for n in range(1, 4):
        charge.capture_micros = int(environ.get("HTTP_X_PER_CHUNK", "1000")) * n
        yield f"chunk{n} ".encode()


def wsgi(emu: Emulator, app: Any = streaming_wsgi, **options: Any) -> SmallTransfersWSGI:
    options.setdefault("pricing", {"/ai": AUTHORIZED})
    options.setdefault("charge_mode", "authorize-capture")
    return SmallTransfersWSGI(app, **emulator_options(emu), **options)


def only_row(emu: Emulator, customer: EmuCustomer) -> Any:
    rows = ledger(emu, customer)
    assert len(rows) == 1
    return rows[0]


def test_the_amount_the_app_sets_is_captured(st_emulator: Emulator, st_customer: Any) -> None:
    with signed_in_client(wsgi(st_emulator), st_emulator, st_customer) as client:
        response = client.get("/ai")
    assert response.text == "chunk1 chunk2 chunk3 "
    row = only_row(st_emulator, st_customer)
    assert (row.kind, row.state) == ("charge", "captured")
    assert (row.authorized_micros, row.captured_micros) == (AUTHORIZED, 3000)


def test_unset_capture_takes_the_whole_authorization(
    st_emulator: Emulator, st_customer: Any
) -> None:
    def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    with signed_in_client(wsgi(st_emulator, plain), st_emulator, st_customer) as client:
        client.get("/ai")
    assert only_row(st_emulator, st_customer).captured_micros == AUTHORIZED


def test_a_price_can_name_its_own_default_capture(st_emulator: Emulator, st_customer: Any) -> None:
    def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    app = wsgi(st_emulator, plain, pricing={"/ai": Price(5000, capture_micros=1200)})
    with signed_in_client(app, st_emulator, st_customer) as client:
        client.get("/ai")
    row = only_row(st_emulator, st_customer)
    assert (row.authorized_micros, row.captured_micros) == (5000, 1200)


def test_a_capture_above_the_authorization_is_clamped_and_logged(
    st_emulator: Emulator, st_customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="st_middleware"),
        signed_in_client(wsgi(st_emulator), st_emulator, st_customer) as client,
    ):
        client.get("/ai", headers={"X-Per-Chunk": "9000"})  # 27000 > 10000
    assert only_row(st_emulator, st_customer).captured_micros == AUTHORIZED
    assert any("clamped" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("status", ["500 Internal Server Error", "404 Not Found", "402 Nope"])
def test_a_failure_status_captures_nothing(
    st_emulator: Emulator, st_customer: Any, status: str
) -> None:
    with signed_in_client(wsgi(st_emulator), st_emulator, st_customer) as client:
        assert client.get("/ai", headers={"X-Status": status}).status_code == int(status[:3])
    row = only_row(st_emulator, st_customer)
    assert row.state == "authorized"
    assert row.captured_micros in (None, 0)


def test_a_redirect_costs_nothing(st_emulator: Emulator, st_customer: Any) -> None:
    """A framework's slash-fixing redirect delivers nothing: the page it leads to is paid."""
    events: list[ChargeEvent] = []
    app = wsgi(st_emulator, on_charge=events.append)
    with signed_in_client(app, st_emulator, st_customer) as client:
        client.get("/ai", headers={"X-Status": "308 Permanent Redirect"})
    row = only_row(st_emulator, st_customer)
    assert row.state == "authorized"
    assert row.captured_micros in (None, 0)
    assert [e.outcome for e in events] == ["authorized", "not_captured"]
    assert events[-1].code == "redirect"


def test_a_not_modified_answer_is_captured(st_emulator: Emulator, st_customer: Any) -> None:
    with signed_in_client(wsgi(st_emulator), st_emulator, st_customer) as client:
        client.get("/ai", headers={"X-Status": "304 Not Modified"})
    assert only_row(st_emulator, st_customer).captured_micros == 3000


def test_a_merchant_can_charge_a_redirect(st_emulator: Emulator, st_customer: Any) -> None:
    """A paid download that redirects to a signed URL: the redirect is the product."""
    app = wsgi(st_emulator, failure_status=lambda status: status >= 400)
    with signed_in_client(app, st_emulator, st_customer) as client:
        client.get("/ai", headers={"X-Status": "302 Found"})
    assert only_row(st_emulator, st_customer).captured_micros == 3000


def test_the_merchant_decides_what_a_failure_is(st_emulator: Emulator, st_customer: Any) -> None:
    app = wsgi(st_emulator, failure_status=lambda status: status >= 500)
    with signed_in_client(app, st_emulator, st_customer) as client:
        client.get("/ai", headers={"X-Status": "404 Not Found"})
    assert only_row(st_emulator, st_customer).captured_micros == 3000


def test_an_app_that_raises_captures_nothing(st_emulator: Emulator, st_customer: Any) -> None:
    events: list[ChargeEvent] = []
    app = wsgi(st_emulator, on_charge=events.append)
    test_app = webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"})
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost") as c:
        sign_in(c, st_emulator, st_customer)
        test_app.set_cookie("st_session", c.cookies["st_session"])
    with pytest.raises(RuntimeError, match="model crashed"):
        test_app.get("/ai", headers={"X-Raise": "1"})
    row = only_row(st_emulator, st_customer)
    assert row.state == "authorized"
    assert [e.outcome for e in events] == ["authorized", "not_captured"]
    assert events[-1].code == "app_failed"


def call_raw(app: SmallTransfersWSGI, emu: Emulator, customer: Any) -> Any:
    """Call the middleware as a WSGI server would, leaving iteration and close() to the test."""
    with signed_in_client(app, emu, customer) as client:
        cookie = client.cookies["st_session"]
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/ai",
        "HTTP_HOST": "localhost",
        "HTTP_COOKIE": f"st_session={cookie}",
        "wsgi.url_scheme": "http",
    }
    return app(environ, lambda status, headers, exc_info=None: None)


def test_the_capture_happens_in_close_after_the_last_chunk(
    st_emulator: Emulator, st_customer: Any
) -> None:
    body = call_raw(wsgi(st_emulator), st_emulator, st_customer)
    assert list(body) == [b"chunk1 ", b"chunk2 ", b"chunk3 "]
    assert only_row(st_emulator, st_customer).state == "authorized"  # not yet
    body.close()
    assert only_row(st_emulator, st_customer).captured_micros == 3000


def test_a_server_closing_before_the_first_chunk_still_captures(
    st_emulator: Emulator, st_customer: Any
) -> None:
    """A generator's finally would not run here; the body wrapper's close() does."""

    def eager(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["smalltransfers.charge"].capture_micros = 400
        start_response("200 OK", [])
        return [b"done"]

    body = call_raw(wsgi(st_emulator, eager), st_emulator, st_customer)
    body.close()  # the visitor left before the first byte was written
    assert only_row(st_emulator, st_customer).captured_micros == 400


def test_a_lazy_app_closed_before_it_started_owes_nothing(
    st_emulator: Emulator, st_customer: Any
) -> None:
    body = call_raw(wsgi(st_emulator), st_emulator, st_customer)
    body.close()  # the generator never ran, so no response was ever started
    assert only_row(st_emulator, st_customer).state == "authorized"


def test_a_capture_that_fails_transiently_is_retried_until_confirmed(
    st_emulator: Emulator, st_customer: Any
) -> None:
    """The visitor got the answer; a 500 on the capture delays the money, never loses it."""
    failures: list[ChargeEvent] = []
    successes: list[ChargeEvent] = []
    app = wsgi(st_emulator, on_charge_failed=failures.append, on_charge=successes.append)
    try:
        with signed_in_client(app, st_emulator, st_customer) as client:
            st_emulator.set_faults(error="server_error", path="/api/v1/charges/", count=1)
            try:
                response = client.get("/ai")
            finally:
                st_emulator.clear_faults()
        assert response.status_code == 200
        assert response.text == "chunk1 chunk2 chunk3 "
        wait_for(lambda: only_row(st_emulator, st_customer).state == "captured", seconds=5)
        assert only_row(st_emulator, st_customer).captured_micros == 3000
        assert failures == []
        assert [e.outcome for e in successes] == ["authorized", "captured"]
    finally:
        app.close()


def test_a_terminal_capture_answer_is_reported_once(
    st_emulator: Emulator, st_customer: Any
) -> None:
    failures: list[ChargeEvent] = []
    app = wsgi(st_emulator, on_charge_failed=failures.append)
    try:
        with signed_in_client(app, st_emulator, st_customer) as client:
            st_emulator.set_faults(error="charge_expired", path="/api/v1/charges/", count=1)
            try:
                assert client.get("/ai").status_code == 200
            finally:
                st_emulator.clear_faults()
        assert [e.outcome for e in failures] == ["capture_failed"]
        assert failures[0].code == "charge_expired"
        assert only_row(st_emulator, st_customer).state == "authorized"
        entries = app._stores.sync.captures()
        assert [(e.state, e.attempts) for e in entries] == [("failed", 1)]
    finally:
        app.close()


def wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_one_app_can_mix_flat_and_usage_based_routes(
    st_emulator: Emulator, st_customer: Any
) -> None:
    pricing = {"/flat": 700, "/ai": Price(AUTHORIZED, mode="authorize-capture")}
    app = SmallTransfersWSGI(streaming_wsgi, **emulator_options(st_emulator), pricing=pricing)
    with signed_in_client(app, st_emulator, st_customer) as client:
        client.get("/flat")
        client.get("/ai")
    rows = ledger(st_emulator, st_customer)
    assert [(r.kind, r.captured_micros) for r in rows] == [("transaction", 700), ("charge", 3000)]


def test_capture_micros_changes_nothing_in_transaction_mode(
    st_emulator: Emulator, st_customer: Any
) -> None:
    amounts: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        charge = environ["smalltransfers.charge"]
        charge.capture_micros = 5
        amounts.append(charge.amount_micros)
        start_response("200 OK", [])
        return [b""]

    mw = SmallTransfersWSGI(app, **emulator_options(st_emulator), pricing={"/x": 10})
    with signed_in_client(mw, st_emulator, st_customer) as client:
        client.get("/x")
    assert amounts == [10]
    assert only_row(st_emulator, st_customer).captured_micros == 10


def test_capture_micros_refuses_floats_and_negatives() -> None:
    from st_middleware import Charge

    charge = Charge(mode="authorize-capture", authorized_micros=10, idempotency_key="k")
    with pytest.raises(TypeError):
        charge.capture_micros = 1.5  # type: ignore[assignment]
    with pytest.raises(ValueError, match=">= 0"):
        charge.capture_micros = -1


# -- ASGI ---------------------------------------------------------------------------


async def streaming_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    charge = scope["smalltransfers.charge"]
    headers = dict(scope["headers"])
    status = int(headers.get(b"x-status", b"200"))
    await send({"type": "http.response.start", "status": status, "headers": []})
    if b"x-raise" in headers:
        raise RuntimeError("model crashed")
    for n in range(1, 4):
        charge.capture_micros = 1000 * n
        await send({"type": "http.response.body", "body": f"chunk{n} ".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def asgi(emu: Emulator, **options: Any) -> SmallTransfersASGI:
    return SmallTransfersASGI(
        streaming_asgi,
        **emulator_options(emu),
        pricing={"/ai": AUTHORIZED},
        charge_mode="authorize-capture",
        **options,
    )


@pytest.mark.anyio
async def test_asgi_captures_what_the_app_set(st_emulator: Emulator, st_customer: Any) -> None:
    async with async_signed_in_client(asgi(st_emulator), st_emulator, st_customer) as client:
        response = await client.get("/ai")
    assert response.text == "chunk1 chunk2 chunk3 "
    assert only_row(st_emulator, st_customer).captured_micros == 3000


@pytest.mark.anyio
@pytest.mark.parametrize("headers", [{"X-Status": "503"}, {"X-Status": "400"}])
async def test_asgi_failure_status_captures_nothing(
    st_emulator: Emulator, st_customer: Any, headers: dict[str, str]
) -> None:
    async with async_signed_in_client(asgi(st_emulator), st_emulator, st_customer) as client:
        await client.get("/ai", headers=headers)
    assert only_row(st_emulator, st_customer).state == "authorized"


@pytest.mark.anyio
async def test_asgi_app_that_raises_captures_nothing(
    st_emulator: Emulator, st_customer: Any
) -> None:
    async with async_signed_in_client(asgi(st_emulator), st_emulator, st_customer) as client:
        with pytest.raises(RuntimeError):
            await client.get("/ai", headers={"X-Raise": "1"})
    assert only_row(st_emulator, st_customer).state == "authorized"


async def _signed_in_cookie(app: SmallTransfersASGI, emu: Emulator, customer: Any) -> str:
    async with async_signed_in_client(app, emu, customer) as client:
        return client.cookies["st_session"]


def _scope(cookie: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ai",
        "raw_path": b"/ai",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"cookie", f"st_session={cookie}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


@pytest.mark.anyio
async def test_asgi_streams_chunk_by_chunk_and_captures_after_the_last(
    st_emulator: Emulator, st_customer: Any
) -> None:
    app = asgi(st_emulator)
    cookie = await _signed_in_cookie(app, st_emulator, st_customer)
    sent: list[dict[str, Any]] = []
    states_at_send: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        states_at_send.append(only_row(st_emulator, st_customer).state)

    await app(_scope(cookie), _receive, send)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert [m["body"] for m in bodies] == [b"chunk1 ", b"chunk2 ", b"chunk3 ", b""]
    assert set(states_at_send) == {"authorized"}  # nothing captured while streaming
    assert only_row(st_emulator, st_customer).captured_micros == 3000


def hangs_up_at_second_body() -> Any:
    """An ASGI ``send`` whose visitor goes away when the second body chunk is sent."""
    bodies = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal bodies
        if message["type"] == "http.response.body":
            bodies += 1
            if bodies == 2:
                raise ConnectionResetError("visitor went away")

    return send


@pytest.mark.anyio
async def test_asgi_hang_up_the_app_lets_through_captures_nothing(
    st_emulator: Emulator, st_customer: Any
) -> None:
    app = asgi(st_emulator)
    cookie = await _signed_in_cookie(app, st_emulator, st_customer)
    send = hangs_up_at_second_body()
    with pytest.raises(ConnectionResetError):
        await app(_scope(cookie), _receive, send)
    assert only_row(st_emulator, st_customer).state == "authorized"


async def stops_on_hang_up(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that notices the visitor left and ends cleanly, having billed what it made."""
    charge = scope["smalltransfers.charge"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for n in range(1, 4):
        charge.capture_micros = 1000 * n
        try:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        except OSError:
            return
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.anyio
async def test_asgi_app_that_ends_cleanly_after_a_hang_up_captures_what_it_set(
    st_emulator: Emulator, st_customer: Any
) -> None:
    app = SmallTransfersASGI(
        stops_on_hang_up,
        **emulator_options(st_emulator),
        pricing={"/ai": AUTHORIZED},
        charge_mode="authorize-capture",
    )
    cookie = await _signed_in_cookie(app, st_emulator, st_customer)
    send = hangs_up_at_second_body()
    await app(_scope(cookie), _receive, send)
    assert only_row(st_emulator, st_customer).captured_micros == 2000
