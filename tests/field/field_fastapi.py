"""The matrix's FastAPI app, wrapped with ``SmallTransfersASGI`` (as the README shows)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from field_apps import CELL_HEADER, SECRET_HEADER, SECRET_VALUE, middleware_options, record, wrapped

from st_middleware import SmallTransfersASGI

bare = FastAPI()


def _answer(request: Request, handler: str, *, secret: bool) -> PlainTextResponse:
    record(handler, request.method, request.scope["path"], request.headers.get(CELL_HEADER))
    headers = {SECRET_HEADER: SECRET_VALUE} if secret else None
    return PlainTextResponse(f"{handler}: the content\n", headers=headers)


@bare.api_route("/paid", methods=["GET", "POST"])
async def paid(request: Request) -> PlainTextResponse:
    return _answer(request, "paid", secret=True)


@bare.api_route("/api/{rest:path}", methods=["GET", "POST"])
async def api(request: Request, rest: str) -> PlainTextResponse:
    return _answer(request, "api", secret=True)


@bare.get("/search")
async def search_form(request: Request) -> PlainTextResponse:
    return _answer(request, "search", secret=False)  # GET /search is free


@bare.post("/search")
async def search_results(request: Request) -> PlainTextResponse:
    return _answer(request, "search", secret=True)


@bare.get("/report")
async def report(request: Request) -> PlainTextResponse:
    return _answer(request, "report", secret=True)


@bare.get("/free")
async def free(request: Request) -> PlainTextResponse:
    return _answer(request, "free", secret=False)


@bare.get("/")
async def home(request: Request) -> PlainTextResponse:
    return _answer(request, "home", secret=False)


app: Any = SmallTransfersASGI(bare, **middleware_options()) if wrapped() else bare
