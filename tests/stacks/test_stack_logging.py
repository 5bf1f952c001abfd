"""Under gunicorn the middleware's log shows only once it is configured.

``--log-level info`` sets gunicorn's own loggers; ``st_middleware`` has no
handler and the root logger none either, so its INFO records (every charge,
every sign-in) are dropped. Two ways that work, proposed for the README: the
lines in ``stack_logging_app.py`` (reuse gunicorn's handlers and level), or
a ``logconfig_dict`` in a gunicorn config file (``stack_gunicorn_conf.py``).
"""

from __future__ import annotations

import pytest
from stack_support import HERE, Served, Servers, Spec, gunicorn, rows, wait_for

from st_middleware import testing as kit
from st_middleware.emulator import Emulator

pytestmark = pytest.mark.slow

CONFIG = str(HERE / "stack_gunicorn_conf.py")


@pytest.fixture(scope="module")
def started(servers: Servers) -> dict[str, Served]:
    specs = [
        Spec("log-level-info", gunicorn("stack_proxy_app:wsgi", "--log-level", "info")),
        Spec("app-lines", gunicorn("stack_logging_app:app", "--log-level", "info")),
        Spec("config-file", gunicorn("stack_proxy_app:wsgi", "-c", CONFIG)),
    ]
    return {served.spec.name: served for served in servers.start(*specs)}


def pay_once(server: Served, emu: Emulator) -> str:
    """Sign in and open the priced page; the charge line the middleware logs for it."""
    customer = kit.new_customer(emu)
    with server.client() as client:
        kit.sign_in(client, emu, customer)
        assert client.get("/paid").status_code == 200, server.tail()
    assert rows(emu, customer) == [("transaction", "captured", 2000)]
    return f"charge charged: GET /paid 2000 micros (transaction) customer={customer.id}"


def test_log_level_info_alone_shows_no_charge(
    started: dict[str, Served], st_emulator: Emulator
) -> None:
    server = started["log-level-info"]
    line = pay_once(server, st_emulator)
    # The middleware logged before the app ran, so it would be there by now.
    assert line not in server.tail()
    assert "sign-in: customer" not in server.tail()


@pytest.mark.parametrize("name", ["app-lines", "config-file"])
def test_configured_the_charge_is_logged_with_gunicorns_messages(
    name: str, started: dict[str, Served], st_emulator: Emulator
) -> None:
    server = started[name]
    line = pay_once(server, st_emulator)
    wait_for(lambda: line in server.tail(), 10, f"{line!r} in the log:\n{server.tail()}")
