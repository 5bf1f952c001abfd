"""examples/django_app: wsgi.py through webtest and under gunicorn, asgi.py through
httpx's ASGI transport (Django has no lifespan) and under uvicorn; at / and mounted at /app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from example_support import (
    Server,
    WebtestVisitor,
    asgi_transport_client,
    documented_launch,
    serve,
    visitor_pays_once_sees_their_name_and_signs_out,
    visitor_who_denies_returns_to_the_page_signed_out,
)

from st_middleware.emulator import Emulator

EXAMPLE = "examples/django_app/__init__.py"
PAID = "/paid/"  # Django's trailing slash; the pricing names it the same way


def test_through_wsgi_a_visitor_signs_in_pays_once_and_sees_their_name(
    load_example: Callable[[str], ModuleType], emu: Emulator
) -> None:
    wsgi = load_example("examples.django_app.wsgi")
    try:
        visitor_pays_once_sees_their_name_and_signs_out(WebtestVisitor(wsgi.application), emu, PAID)
    finally:
        wsgi.application.close()  # the middleware's pooled connections to Small Transfers


def test_through_asgi_a_visitor_signs_in_pays_once_and_sees_their_name(
    load_example: Callable[[str], ModuleType], emu: Emulator
) -> None:
    asgi = load_example("examples.django_app.asgi")
    with asgi_transport_client(asgi.application) as visitor:
        visitor_pays_once_sees_their_name_and_signs_out(visitor, emu, PAID)


@pytest.fixture(
    scope="module",
    params=[
        ("gunicorn", 0, ""),
        ("gunicorn", 0, "/app"),
        ("uvicorn", 1, ""),
        ("uvicorn", 1, "/app"),
    ],
    ids=[
        "wsgi-gunicorn-at-root",
        "wsgi-gunicorn-at-app",
        "asgi-uvicorn-at-root",
        "asgi-uvicorn-at-app",
    ],
)
def django_server(
    request: pytest.FixtureRequest, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server, which, prefix = request.param
    log = tmp_path_factory.mktemp(server) / "server.log"
    with serve(documented_launch(EXAMPLE, prefix, which), emu, log) as running:
        yield running


def test_under_a_real_server_the_round_trip_keeps_the_mount_prefix_and_charges_once(
    django_server: Server, emu: Emulator
) -> None:
    with django_server.visitor() as visitor:
        visitor_pays_once_sees_their_name_and_signs_out(visitor, emu, PAID)


def test_under_a_real_server_a_visitor_who_denies_comes_back_to_the_page_signed_out(
    django_server: Server, emu: Emulator
) -> None:
    with django_server.visitor() as visitor:
        visitor_who_denies_returns_to_the_page_signed_out(visitor, emu, PAID)
