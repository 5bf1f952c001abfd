"""FastAPI that handles its own ``/api`` prefix, behind the middleware (test_stack_prefix.py).

``FastAPI(root_path="/api")`` sets ``root_path`` *inside* FastAPI, after the
middleware has seen the request. The middleware's keywords, pricing included,
come from ``STACK_ST_OPTIONS`` (JSON), so one module serves every setup.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Request

from st_middleware import SmallTransfersASGI, charge_of, customer_of

OPTIONS: dict[str, Any] = json.loads(os.environ.get("STACK_ST_OPTIONS") or "{}")

api = FastAPI(root_path="/api")


def describe(request: Request) -> dict[str, Any]:
    customer, charge = customer_of(request), charge_of(request)
    return {
        "url": str(request.url_for("paid")),
        "customer": customer.id if customer is not None else None,
        "charged": charge.amount_micros if charge is not None else None,
    }


@api.get("/health")
def health() -> str:
    return "ok"


@api.get("/paid", name="paid")
def paid(request: Request) -> dict[str, Any]:
    return describe(request)


@api.get("/report")
def report(request: Request) -> dict[str, Any]:
    return describe(request)


app = SmallTransfersASGI(api, **OPTIONS)
