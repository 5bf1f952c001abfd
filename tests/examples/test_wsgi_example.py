"""examples/wsgi_app.py: through webtest, and under gunicorn (at / and with SCRIPT_NAME=/app)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from example_support import (
    Server,
    WebtestVisitor,
    documented_launch,
    serve,
    visitor_pays_once_sees_their_name_and_signs_out,
    visitor_who_denies_returns_to_the_page_signed_out,
)

from st_middleware.emulator import Emulator


def test_a_visitor_signs_in_pays_once_for_the_article_and_sees_their_name(
    load_example: Callable[[str], ModuleType], emu: Emulator
) -> None:
    wsgi_app = load_example("examples.wsgi_app")
    try:
        visitor_pays_once_sees_their_name_and_signs_out(WebtestVisitor(wsgi_app.app), emu)
    finally:
        wsgi_app.app.close()  # the middleware's pooled connections to Small Transfers


@pytest.fixture(scope="module", params=["", "/app"], ids=["at-root", "mounted-at-app"])
def gunicorn_server(
    request: pytest.FixtureRequest, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("gunicorn") / "server.log"
    with serve(documented_launch("examples/wsgi_app.py", request.param), emu, log) as server:
        yield server


def test_under_gunicorn_the_round_trip_keeps_the_mount_prefix_and_charges_once(
    gunicorn_server: Server, emu: Emulator
) -> None:
    with gunicorn_server.visitor() as visitor:
        visitor_pays_once_sees_their_name_and_signs_out(visitor, emu)


def test_under_gunicorn_a_visitor_who_denies_comes_back_to_the_page_signed_out(
    gunicorn_server: Server, emu: Emulator
) -> None:
    with gunicorn_server.visitor() as visitor:
        visitor_who_denies_returns_to_the_page_signed_out(visitor, emu)
