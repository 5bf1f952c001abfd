"""Django: where a view finds the customer, over WSGI (gunicorn) and ASGI (daphne, uvicorn).

Under WSGI the middleware's values are in the environ, ``request.META``;
under ASGI Django builds ``META`` from the headers and the values are only in
``request.scope``. ``st_middleware.customer_of(request)`` reads either, which
is what the README's Django snippet should show.
"""

from __future__ import annotations

import pytest
from stack_support import Served, Servers, Spec, daphne, gunicorn, rows, uvicorn

from st_middleware import testing as kit
from st_middleware.emulator import Customer, Emulator

pytestmark = pytest.mark.slow

SERVERS = {
    "gunicorn": (gunicorn("stack_django_app:wsgi"), "wsgi"),
    "daphne": (daphne("stack_django_app:asgi"), "asgi"),
    "uvicorn": (uvicorn("stack_django_app:asgi"), "asgi"),
}


@pytest.fixture(scope="module")
def started(servers: Servers) -> dict[str, Served]:
    specs = [Spec(name, command) for name, (command, _) in SERVERS.items()]
    return {served.spec.name: served for served in servers.start(*specs)}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_customer_of_finds_the_customer_where_meta_or_scope_has_it(
    name: str, started: dict[str, Served], st_emulator: Emulator, st_customer: Customer
) -> None:
    server = started[name]
    wsgi = SERVERS[name][1] == "wsgi"
    with server.client() as client:
        anonymous = client.get("/free").json()
        kit.sign_in(client, st_emulator, st_customer)
        free, paid = client.get("/free").json(), client.get("/paid").json()
    assert anonymous == {"in_meta": wsgi, "in_scope": not wsgi, "customer_of": None}
    signed_in = {"in_meta": wsgi, "in_scope": not wsgi, "customer_of": st_customer.id}
    assert free == signed_in
    assert paid == signed_in
    assert rows(st_emulator, st_customer) == [("transaction", "captured", 1500)]
