"""examples/asgi_app.py: through httpx's ASGI transport, and under uvicorn (at / and at /app)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from example_support import (
    Server,
    asgi_test_client,
    asgi_transport_client,
    documented_launch,
    serve,
    visitor_pays_once_sees_their_name_and_signs_out,
    visitor_who_denies_returns_to_the_page_signed_out,
)

from st_middleware.emulator import Emulator


def test_a_visitor_signs_in_pays_once_for_the_article_and_sees_their_name(
    load_example: Callable[[str], ModuleType], emu: Emulator
) -> None:
    asgi_app = load_example("examples.asgi_app")
    with asgi_transport_client(asgi_app.app) as visitor:
        visitor_pays_once_sees_their_name_and_signs_out(visitor, emu)


def test_the_app_answers_lifespan_so_the_middleware_can_close_its_connections(
    load_example: Callable[[str], ModuleType], emu: Emulator
) -> None:
    asgi_app = load_example("examples.asgi_app")
    with asgi_test_client(asgi_app.app) as visitor:  # runs lifespan startup and shutdown
        assert "Not signed in." in visitor.get("/").text


@pytest.fixture(scope="module", params=["", "/app"], ids=["at-root", "behind-a-proxy-at-app"])
def uvicorn_server(
    request: pytest.FixtureRequest, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    with serve(documented_launch("examples/asgi_app.py", request.param), emu, log) as server:
        yield server


def test_under_uvicorn_the_round_trip_keeps_the_root_path_and_charges_once(
    uvicorn_server: Server, emu: Emulator
) -> None:
    with uvicorn_server.visitor() as visitor:
        visitor_pays_once_sees_their_name_and_signs_out(visitor, emu)


def test_under_uvicorn_a_visitor_who_denies_comes_back_to_the_page_signed_out(
    uvicorn_server: Server, emu: Emulator
) -> None:
    with uvicorn_server.visitor() as visitor:
        visitor_who_denies_returns_to_the_page_signed_out(visitor, emu)
