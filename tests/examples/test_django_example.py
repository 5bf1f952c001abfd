"""examples/django_app: wsgi.py through webtest and under gunicorn, asgi.py through
httpx's ASGI transport (Django has no lifespan) and under uvicorn; at / and mounted at /app."""

from __future__ import annotations

from example_support import ExampleTests, asgi_transport_client, webtest_client


class DjangoExample(ExampleTests):
    example = "examples/django_app/__init__.py"
    app = "application"
    paid_path = "/paid/"  # Django's trailing slash; the pricing names it the same way


class TestDjangoThroughWSGI(DjangoExample):
    module = "examples.django_app.wsgi"
    which = 0  # gunicorn
    in_process = staticmethod(webtest_client)


class TestDjangoThroughASGI(DjangoExample):
    module = "examples.django_app.asgi"
    which = 1  # uvicorn
    in_process = staticmethod(asgi_transport_client)
