"""examples/starlette_app.py: through Starlette's TestClient, under uvicorn at / and at /app."""

from __future__ import annotations

from example_support import ExampleTests, asgi_test_client


class TestStarletteExample(ExampleTests):
    example = "examples/starlette_app.py"
    in_process = staticmethod(asgi_test_client)
