"""examples/flask_app.py: through Flask's test client, and under waitress (at / and under /app)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from example_support import ExampleTests, Page


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


@contextmanager
def flask_test_client(app: Any) -> Iterator[FlaskVisitor]:
    try:
        yield FlaskVisitor(app.test_client())
    finally:
        app.wsgi_app.close()  # the middleware's pooled connections to Small Transfers


class TestFlaskExample(ExampleTests):
    example = "examples/flask_app.py"
    in_process = staticmethod(flask_test_client)
