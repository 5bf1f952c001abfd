"""examples/asgi_app.py: through httpx's ASGI transport, and under uvicorn (at / and at /app)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from example_support import ExampleTests, asgi_test_client, asgi_transport_client


class TestASGIExample(ExampleTests):
    example = "examples/asgi_app.py"
    in_process = staticmethod(asgi_transport_client)

    def test_the_app_answers_lifespan_so_the_middleware_can_close_its_connections(
        self, load_example: Callable[[str], ModuleType]
    ) -> None:
        asgi_app = load_example("examples.asgi_app")
        with asgi_test_client(asgi_app.app) as visitor:  # runs lifespan startup and shutdown
            assert "Not signed in." in visitor.get("/").text
