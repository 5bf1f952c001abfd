"""A FastAPI app that wraps itself when imported (test_stack_testing_kit.py).

Its keys come from ``SMALL_TRANSFERS_*`` at import time, as in many real
deployments, and its lifespan hands state to the requests (``request.state``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from st_middleware import SmallTransfersASGI, charge_of, customer_of

#: What the lifespan did, in order (read by the test).
LIFESPAN: list[str] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    LIFESPAN.append("startup")
    yield {"greeting": "hello from the lifespan"}
    LIFESPAN.append("shutdown")


api = FastAPI(lifespan=lifespan)


@api.get("/paid")
def paid(request: Request) -> dict[str, Any]:
    customer, charge = customer_of(request), charge_of(request)
    return {
        "greeting": request.state.greeting,
        "customer": customer.id if customer is not None else None,
        "charged": charge.amount_micros if charge is not None else None,
    }


# Built now, at import: every key is read from the environment.
app = SmallTransfersASGI(api, pricing={"/paid": 2500})
