"""One Django view served over WSGI and ASGI (test_stack_django.py).

The view reports where the middleware's values are: ``request.META`` (the
WSGI environ), ``request.scope`` (the ASGI scope), and what
``st_middleware.customer_of(request)`` finds.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from st_middleware import SmallTransfersASGI, SmallTransfersWSGI, customer_of

settings.configure(
    DEBUG=False,
    SECRET_KEY="stacks-tests-only-not-a-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)
django.setup()

KEY = "smalltransfers.customer"


def where(request: HttpRequest) -> JsonResponse:
    scope = getattr(request, "scope", None)  # only ASGIRequest has one
    customer = customer_of(request)
    return JsonResponse(
        {
            "in_meta": KEY in request.META,
            "in_scope": scope is not None and KEY in scope,
            "customer_of": customer.id if customer is not None else None,
        }
    )


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path("paid", where), path("free", where), path("health", health)]

PRICING = {"/paid": 1500}
wsgi: Any = SmallTransfersWSGI(get_wsgi_application(), pricing=PRICING)
asgi: Any = SmallTransfersASGI(get_asgi_application(), pricing=PRICING)
