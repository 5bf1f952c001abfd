"""A FastAPI app mounted, wrapped, inside another FastAPI app (test_stack_mounts.py).

``main.mount("/shop", SmallTransfersASGI(shop, ...))``: the shop's handlers
call ``request.url_for`` and say what they got, and who paid what.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from st_middleware import SmallTransfersASGI, charge_of, customer_of

shop = FastAPI()


def describe(request: Request) -> dict[str, Any]:
    customer, charge = customer_of(request), charge_of(request)
    return {
        "paid_url": str(request.url_for("paid")),
        "home_url": str(request.url_for("home")),
        "customer": customer.id if customer is not None else None,
        "charged": charge.amount_micros if charge is not None else None,
    }


@shop.get("/", name="home")
def home(request: Request) -> dict[str, Any]:
    return describe(request)


@shop.get("/paid", name="paid")
def paid(request: Request) -> dict[str, Any]:
    return describe(request)


main = FastAPI()


@main.get("/health")
def health(request: Request) -> dict[str, str]:
    # From outside the mount, through the middleware: the shop's routes by name.
    return {"shop_paid": str(request.url_for("paid"))}


# No name: the shop's route names are looked up from the main app as they are.
main.mount("/shop", SmallTransfersASGI(shop, pricing={"/paid": 3000}))
