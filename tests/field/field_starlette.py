"""The matrix's Starlette app, wrapped with ``SmallTransfersASGI``."""

from __future__ import annotations

from typing import Any

from field_apps import CELL_HEADER, SECRET_HEADER, SECRET_VALUE, middleware_options, record, wrapped
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from st_middleware import SmallTransfersASGI


def _answer(request: Request, handler: str, *, secret: bool) -> PlainTextResponse:
    record(handler, request.method, request.scope["path"], request.headers.get(CELL_HEADER))
    headers = {SECRET_HEADER: SECRET_VALUE} if secret else None
    return PlainTextResponse(f"{handler}: the content\n", headers=headers)


async def paid(request: Request) -> PlainTextResponse:
    return _answer(request, "paid", secret=True)


async def api(request: Request) -> PlainTextResponse:
    return _answer(request, "api", secret=True)


async def search_form(request: Request) -> PlainTextResponse:
    return _answer(request, "search", secret=False)  # GET /search is free


async def search_results(request: Request) -> PlainTextResponse:
    return _answer(request, "search", secret=True)


async def report(request: Request) -> PlainTextResponse:
    return _answer(request, "report", secret=True)


async def free(request: Request) -> PlainTextResponse:
    return _answer(request, "free", secret=False)


async def home(request: Request) -> PlainTextResponse:
    return _answer(request, "home", secret=False)


bare = Starlette(
    routes=[
        Route("/paid", paid, methods=["GET", "POST"]),
        Route("/api/{rest:path}", api, methods=["GET", "POST"]),
        Route("/search", search_form, methods=["GET"]),
        Route("/search", search_results, methods=["POST"]),
        Route("/report", report, methods=["GET"]),
        Route("/free", free),
        Route("/", home),
    ]
)

app: Any = SmallTransfersASGI(bare, **middleware_options()) if wrapped() else bare
