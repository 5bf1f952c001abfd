"""The matrix's Django project in one module: settings, URLs, views, WSGI and ASGI entries.

The views are plain functions with no ``require_http_methods``: the worst
case, where any method (OPTIONS, HEAD, a lowercase ``post`` that Django
upper-cases) runs the view and gets its content.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path
from field_apps import CELL_HEADER, SECRET_HEADER, SECRET_VALUE, middleware_options, record, wrapped

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI

settings.configure(
    DEBUG=False,
    SECRET_KEY="field-matrix-only-not-a-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    # No CommonMiddleware (no APPEND_SLASH redirects), no CSRF: the views see
    # every request exactly as routed.
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)
django.setup()


def _answer(request: HttpRequest, handler: str, *, secret: bool) -> HttpResponse:
    record(handler, request.method or "", request.path_info, request.headers.get(CELL_HEADER))
    response = HttpResponse(f"{handler}: the content\n", content_type="text/plain")
    if secret:
        response[SECRET_HEADER] = SECRET_VALUE
    return response


def paid(request: HttpRequest) -> HttpResponse:
    return _answer(request, "paid", secret=True)


def api(request: HttpRequest, rest: str) -> HttpResponse:
    return _answer(request, "api", secret=True)


def search(request: HttpRequest) -> HttpResponse:
    # One view for every method: only POST is priced, any method gets results.
    return _answer(request, "search", secret=True)


def report(request: HttpRequest) -> HttpResponse:
    return _answer(request, "report", secret=True)


def free(request: HttpRequest) -> HttpResponse:
    return _answer(request, "free", secret=False)


def home(request: HttpRequest) -> HttpResponse:
    return _answer(request, "home", secret=False)


urlpatterns = [
    path("", home),
    path("paid", paid),
    path("api/<path:rest>", api),
    path("search", search),
    path("report", report),
    path("free", free),
]

_wsgi: Any = get_wsgi_application()
_asgi: Any = get_asgi_application()
wsgi: Any = SmallTransfersWSGI(_wsgi, **middleware_options()) if wrapped() else _wsgi
asgi: Any = SmallTransfersASGI(_asgi, **middleware_options()) if wrapped() else _asgi
