"""What the middleware hands the app, and how an app reads it back from anything.

The adapters put the customer and the charge under two keys of the WSGI
environ / a copy of the ASGI scope. :func:`customer_of` and :func:`charge_of`
read them from whatever the app holds: the environ or scope itself, or a
Flask/Werkzeug, Django (WSGI or ASGI) or Starlette/FastAPI request. When the
keys are missing, the middleware is not around the app that served the
request, which is said plainly instead of a ``KeyError`` deep in a handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._charge import Charge
from ._customer import Customer
from ._errors import ConfigurationError

__all__ = ["CHARGE", "CUSTOMER", "MiddlewareMissing", "charge_of", "customer_of"]

CUSTOMER = "smalltransfers.customer"
CHARGE = "smalltransfers.charge"


class MiddlewareMissing(ConfigurationError):
    """The request did not go through ``SmallTransfersWSGI``/``SmallTransfersASGI``."""

    code = "middleware_missing"


def customer_of(request: object) -> Customer | None:
    """The signed-in customer of ``request`` (``None``: nobody is signed in).

    ``request`` is a WSGI environ, an ASGI scope, or a framework request
    (Flask, Django, Starlette/FastAPI). Raises :class:`MiddlewareMissing` when
    the app is not wrapped by the middleware.
    """
    value: Customer | None = _values(request, CUSTOMER)[CUSTOMER]
    return value


def charge_of(request: object) -> Charge | None:
    """The charge of ``request`` (``None`` on a free request); see :func:`customer_of`."""
    value: Charge | None = _values(request, CHARGE)[CHARGE]
    return value


def _values(request: object, key: str) -> Mapping[str, Any]:
    # A scope first: a Django ASGI request also has a META built from headers.
    for name in ("scope", "environ", "META"):
        values = getattr(request, name, None)
        if isinstance(values, Mapping) and key in values:
            return values
    if isinstance(request, Mapping) and key in request:
        return request
    raise MiddlewareMissing(
        f"no {key!r} in this request: the app was served without SmallTransfersWSGI/"
        "SmallTransfersASGI around it (serve the wrapped app, e.g. `uvicorn module:app` "
        "where `app = SmallTransfersASGI(...)`, or `app.wsgi_app = SmallTransfersWSGI(...)` "
        "in Flask)"
    )
