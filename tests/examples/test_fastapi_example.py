"""examples/fastapi_app.py: through FastAPI's TestClient, and under uvicorn (at / and at /app)."""

from __future__ import annotations

from example_support import ExampleTests, asgi_test_client


class TestFastAPIExample(ExampleTests):
    example = "examples/fastapi_app.py"
    in_process = staticmethod(asgi_test_client)
