"""The merchants' testing kit: signed-in clients for WSGI and ASGI, ledger helpers."""

from __future__ import annotations

from typing import Any

import pytest

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI
from st_middleware.emulator import Customer as EmuCustomer
from st_middleware.emulator import Emulator
from st_middleware.testing import (
    async_signed_in_client,
    charges,
    emulator_options,
    ledger,
    signed_in_client,
)


def hello_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    customer = environ["smalltransfers.customer"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"hello {customer.first_name if customer else 'nobody'}".encode()]


async def hello_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    customer = scope["smalltransfers.customer"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"hi {customer.id}".encode()})


def test_the_fixtures_give_a_running_emulator_and_a_fresh_customer(
    st_emulator: Emulator, st_customer: EmuCustomer
) -> None:
    assert st_emulator.url.startswith("http://127.0.0.1:")
    assert st_customer.limit_micros == 1_000_000
    assert ledger(st_emulator, st_customer) == []


def test_a_signed_in_wsgi_client_is_charged_once_per_paid_request(
    st_emulator: Emulator, st_customer: EmuCustomer
) -> None:
    app = SmallTransfersWSGI(hello_wsgi, **emulator_options(st_emulator), pricing={"/paid": 3000})
    with signed_in_client(app, st_emulator, st_customer) as client:
        assert client.get("/paid").text == "hello Test"
        assert client.get("/free").text == "hello Test"
    assert charges(st_emulator, st_customer) == [3000]


@pytest.mark.anyio
async def test_a_signed_in_asgi_client_is_charged_once_per_paid_request(
    st_emulator: Emulator, st_customer: EmuCustomer
) -> None:
    app = SmallTransfersASGI(hello_asgi, **emulator_options(st_emulator), pricing={"/paid": 1})
    async with async_signed_in_client(app, st_emulator, st_customer) as client:
        assert (await client.get("/paid")).text == f"hi {st_customer.id}"
        assert (await client.get("/paid")).status_code == 200
    assert charges(st_emulator, st_customer) == [1, 1]


def test_a_client_without_a_customer_gets_a_new_one(st_emulator: Emulator) -> None:
    app = SmallTransfersWSGI(hello_wsgi, **emulator_options(st_emulator), pricing={"/paid": 7})
    with signed_in_client(app, st_emulator) as client:
        assert client.get("/paid").status_code == 200
    assert 7 in charges(st_emulator)


# -- lifespan and import-time apps ------------------------------------------------------------


@pytest.mark.anyio
async def test_the_async_client_runs_the_apps_lifespan(
    st_emulator: Emulator, st_customer: EmuCustomer
) -> None:
    """A Starlette app whose handlers read request.state set by its lifespan."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        events.append("startup")
        yield {"greeting": "bonjour"}
        events.append("shutdown")

    async def paid(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    app = Starlette(routes=[Route("/paid", paid)], lifespan=lifespan)
    wrapped = SmallTransfersASGI(app, **emulator_options(st_emulator), pricing={"/paid": 10})
    async with async_signed_in_client(wrapped, st_emulator, st_customer) as client:
        assert events == ["startup"]
        assert (await client.get("/paid")).text == "bonjour"
    assert events == ["startup", "shutdown"]
    assert charges(st_emulator, st_customer) == [10]


@pytest.mark.anyio
async def test_an_app_without_lifespan_still_works(
    st_emulator: Emulator, st_customer: EmuCustomer
) -> None:
    wrapped = SmallTransfersASGI(hello_asgi, **emulator_options(st_emulator))
    async with async_signed_in_client(wrapped, st_emulator, st_customer) as client:
        assert (await client.get("/")).text == f"hi {st_customer.id}"


def test_st_env_serves_apps_that_wrap_themselves_at_import(
    st_env: dict[str, str], st_emulator: Emulator, st_customer: EmuCustomer
) -> None:
    # What `app = SmallTransfersWSGI(app, pricing=...)` at module level reads.
    wrapped = SmallTransfersWSGI(hello_wsgi, pricing={"/": 7})
    assert wrapped.settings.base_url == st_emulator.url
    with signed_in_client(wrapped, st_emulator, st_customer) as client:
        assert client.get("/").text == "hello Test"
    assert charges(st_emulator, st_customer) == [7]
