"""examples/flask_app.py: through Flask's test client, and under waitress (at / and under /app)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from example_support import (
    Page,
    Server,
    documented_launch,
    serve,
    visitor_pays_once_sees_their_name_and_signs_out,
    visitor_who_denies_returns_to_the_page_signed_out,
)

from st_middleware.emulator import Emulator


class FlaskVisitor:
    """A visitor over ``app.test_client()`` (which keeps cookies, like a browser)."""

    origin = "http://localhost"
    prefix = ""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _page(self, response: Any) -> Page:
        return Page(response.status_code, response.headers.get("Location"), response.text)

    def get(self, path: str) -> Page:
        return self._page(self.client.get(path, headers={"Accept": "text/html"}))

    def post(self, path: str) -> Page:
        return self._page(self.client.post(path, headers={"Accept": "text/html"}))


@pytest.fixture(scope="module")
def flask_app(load_example: Callable[[str], ModuleType]) -> Iterator[ModuleType]:
    module = load_example("examples.flask_app")
    yield module
    module.app.wsgi_app.close()  # the middleware's pooled connections to Small Transfers


def test_a_visitor_signs_in_pays_once_for_the_article_and_sees_their_name(
    flask_app: ModuleType, emu: Emulator
) -> None:
    visitor = FlaskVisitor(flask_app.app.test_client())
    visitor_pays_once_sees_their_name_and_signs_out(visitor, emu)


@pytest.fixture(scope="module", params=["", "/app"], ids=["at-root", "mounted-at-app"])
def waitress_server(
    request: pytest.FixtureRequest, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("waitress") / "server.log"
    launch = documented_launch("examples/flask_app.py", prefix=request.param)
    with serve(launch, emu, log) as server:
        yield server


def test_under_waitress_the_round_trip_keeps_the_mount_prefix_and_charges_once(
    waitress_server: Server, emu: Emulator
) -> None:
    with waitress_server.visitor() as visitor:
        visitor_pays_once_sees_their_name_and_signs_out(visitor, emu)


def test_under_waitress_a_visitor_who_denies_comes_back_to_the_page_signed_out(
    waitress_server: Server, emu: Emulator
) -> None:
    with waitress_server.visitor() as visitor:
        visitor_who_denies_returns_to_the_page_signed_out(visitor, emu)
