"""examples/wsgi_app.py: through webtest, and under gunicorn (at / and with SCRIPT_NAME=/app)."""

from __future__ import annotations

from example_support import ExampleTests, webtest_client


class TestWSGIExample(ExampleTests):
    example = "examples/wsgi_app.py"
    in_process = staticmethod(webtest_client)
