"""Apps read the customer from whatever they hold; a missing middleware is said plainly."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask, request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from helpers import middleware_options
from st_middleware import (
    MiddlewareMissing,
    SmallTransfersASGI,
    SmallTransfersWSGI,
    charge_of,
    customer_of,
)

pytestmark = pytest.mark.anyio


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/who")
    def who() -> str:
        return repr((customer_of(request), charge_of(request)))

    return app


def starlette_app() -> Starlette:
    async def who(req: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse(repr((customer_of(req), charge_of(req))))

    return Starlette(routes=[Route("/who", who)])


def test_flask_reads_it_from_its_request(emu: Any) -> None:
    app = flask_app()
    app.wsgi_app = SmallTransfersWSGI(app.wsgi_app, **middleware_options(emu))  # type: ignore[method-assign]
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://localhost") as c:
        assert c.get("/who").text == "(None, None)"


def test_flask_without_the_middleware_is_told_so() -> None:
    app = flask_app()
    app.testing = True
    with pytest.raises(MiddlewareMissing, match="SmallTransfersWSGI"):
        app.test_client().get("/who")


async def test_starlette_reads_it_from_its_request(emu: Any) -> None:
    app = SmallTransfersASGI(starlette_app(), **middleware_options(emu))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        assert (await c.get("/who")).text == "(None, None)"


async def test_starlette_without_the_middleware_is_told_so() -> None:
    transport = httpx.ASGITransport(app=starlette_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        with pytest.raises(MiddlewareMissing, match=r"no 'smalltransfers\.customer'"):
            await c.get("/who")


def test_raw_mappings() -> None:
    # Django requests (request.META under WSGI, request.scope under ASGI) are read by
    # the Django example's middleware, under gunicorn and uvicorn: tests/examples.
    assert customer_of({"smalltransfers.customer": None}) is None
    with pytest.raises(MiddlewareMissing):
        customer_of({"type": "http"})
    with pytest.raises(MiddlewareMissing):
        charge_of(object())
    # A configuration error: one `except ConfigurationError` catches every setup mistake.
    assert MiddlewareMissing.code == "middleware_missing"
