"""A kit for merchants' own test suites: the emulator, signed-in clients, ledger checks.

Installed as a pytest plugin (fixtures ``st_emulator`` and ``st_customer``);
everything also works without pytest::

    from st_middleware import SmallTransfersWSGI
    from st_middleware.testing import emulator_options, signed_in_client, charges

    def test_paid_page_charges_once(st_emulator, st_customer):
        app = SmallTransfersWSGI(my_app, **emulator_options(st_emulator),
                                 pricing={"/paid": 3000})
        with signed_in_client(app, st_emulator, st_customer) as client:
            assert client.get("/paid").status_code == 200
        assert charges(st_emulator, st_customer) == [3000]

Sign-in runs the real flow without a browser: the sign-in route, a code the
emulator issues as if the customer had pressed Allow, and the callback, so
the client ends up holding a real session cookie.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx

from .emulator import ChargeRecord, Emulator
from .emulator import Customer as EmulatorCustomer

__all__ = [
    "async_sign_in",
    "async_signed_in_client",
    "charges",
    "emulator_env",
    "emulator_options",
    "ledger",
    "new_customer",
    "running_lifespan",
    "sign_in",
    "signed_in_client",
    "st_customer",
    "st_emulator",
    "st_env",
]

#: A session secret good for tests only (never use a fixed secret in production).
TEST_SESSION_SECRET = "st-middleware-testing-session-secret-0123456789"  # noqa: S105
DEFAULT_BASE_URL = "http://localhost"


def emulator_options(emulator: Emulator, **overrides: Any) -> dict[str, Any]:
    """Keywords that point a middleware at ``emulator``: keys, base URL, a test secret."""
    return {
        "publishable_key": emulator.publishable_key,
        "secret_key": emulator.secret_key,
        "base_url": emulator.url,
        "session_secret": TEST_SESSION_SECRET,
        **overrides,
    }


def _authorize_params(response: httpx.Response) -> tuple[str, str]:
    if response.status_code not in (302, 303, 307):
        raise AssertionError(f"sign-in route answered {response.status_code}, not a redirect")
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return query["redirect_uri"][0], query["state"][0]


def _callback_url(redirect_uri: str, code: str, state: str) -> str:
    return urlsplit(redirect_uri).path + "?" + urlencode({"code": code, "state": state})


def _check_signed_in(response: httpx.Response) -> None:
    if response.status_code != 303:
        raise AssertionError(f"callback answered {response.status_code}: {response.text[:300]!r}")


def sign_in(
    client: httpx.Client,
    emulator: Emulator,
    customer: EmulatorCustomer,
    *,
    sign_in_path: str = "/smalltransfers/sign-in",
    next_path: str = "/",
) -> None:
    """Sign ``client`` in as ``customer`` (the client keeps the session cookie)."""
    start = client.get(sign_in_path, params={"next": next_path}, follow_redirects=False)
    redirect_uri, state = _authorize_params(start)
    code = emulator.issue_code(customer_id=customer.id, redirect_uri=redirect_uri)
    done = client.get(_callback_url(redirect_uri, code, state), follow_redirects=False)
    _check_signed_in(done)


async def async_sign_in(
    client: httpx.AsyncClient,
    emulator: Emulator,
    customer: EmulatorCustomer,
    *,
    sign_in_path: str = "/smalltransfers/sign-in",
    next_path: str = "/",
) -> None:
    """:func:`sign_in` for an ``httpx.AsyncClient`` (ASGI apps)."""
    start = await client.get(sign_in_path, params={"next": next_path}, follow_redirects=False)
    redirect_uri, state = _authorize_params(start)
    code = emulator.issue_code(customer_id=customer.id, redirect_uri=redirect_uri)
    done = await client.get(_callback_url(redirect_uri, code, state), follow_redirects=False)
    _check_signed_in(done)


@contextmanager
def signed_in_client(
    wsgi_app: Any,
    emulator: Emulator,
    customer: EmulatorCustomer | None = None,
    *,
    base_url: str = DEFAULT_BASE_URL,
    **sign_in_options: Any,
) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` on a wrapped WSGI app, signed in as ``customer``.

    Without a customer, a fresh one is created on the emulator.
    """
    customer = customer or new_customer(emulator)
    transport = httpx.WSGITransport(app=wsgi_app)
    with httpx.Client(transport=transport, base_url=base_url) as client:
        sign_in(client, emulator, customer, **sign_in_options)
        yield client


@asynccontextmanager
async def async_signed_in_client(
    asgi_app: Any,
    emulator: Emulator,
    customer: EmulatorCustomer | None = None,
    *,
    base_url: str = DEFAULT_BASE_URL,
    lifespan: bool = True,
    **sign_in_options: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` on a wrapped ASGI app, signed in as ``customer``.

    The app's lifespan runs around the client (startup before the first
    request, shutdown after the last), and the state it sets reaches every
    request as ``scope["state"]`` (Starlette's ``request.state``), as under a
    real server. ``lifespan=False`` skips it.
    """
    customer = customer or new_customer(emulator)
    async with AsyncExitStack() as stack:
        if lifespan:
            state = await stack.enter_async_context(running_lifespan(asgi_app))
            asgi_app = _with_state(asgi_app, state)
        transport = httpx.ASGITransport(app=asgi_app)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url=base_url)
        )
        await async_sign_in(client, emulator, customer, **sign_in_options)
        yield client


@asynccontextmanager
async def running_lifespan(asgi_app: Any) -> AsyncIterator[dict[str, Any]]:
    """Run ``asgi_app``'s lifespan startup, yield its state, then run its shutdown.

    An app that does not speak lifespan (it raises or returns on the scope) is
    simply used without one, as servers do.
    """
    state: dict[str, Any] = {}
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def run() -> None:
        # An app without lifespan support raises or returns: carry on without one.
        with contextlib.suppress(Exception):
            await asgi_app(scope, app_inbox.receive, app_outbox.send)
        await app_outbox.send({"type": "lifespan.ended"})

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        answer = await from_app.receive()
        if answer["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the app's lifespan startup failed: {answer.get('message', '')}")
        try:
            yield state
        finally:
            if answer["type"] == "lifespan.startup.complete":
                await to_app.send({"type": "lifespan.shutdown"})
                with anyio.fail_after(10):
                    while (await from_app.receive())["type"] not in _SHUTDOWN_OVER:
                        pass
            tasks.cancel_scope.cancel()


_SHUTDOWN_OVER = frozenset(
    {"lifespan.shutdown.complete", "lifespan.shutdown.failed", "lifespan.ended"}
)


def _with_state(asgi_app: Any, state: dict[str, Any]) -> Any:
    """``asgi_app`` with a copy of the lifespan state in every request scope, as servers do."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": dict(state)}
        await asgi_app(scope, receive, send)

    return app


def emulator_env(emulator: Emulator, **overrides: str) -> dict[str, str]:
    """The ``SMALL_TRANSFERS_*`` variables that point a middleware at ``emulator``.

    For apps that build the middleware when their module is imported: set
    these before importing it (the ``st_env`` fixture does).
    """
    return {
        "SMALL_TRANSFERS_PUBLISHABLE_KEY": emulator.publishable_key,
        "SMALL_TRANSFERS_SECRET_KEY": emulator.secret_key,
        "SMALL_TRANSFERS_SESSION_SECRET": TEST_SESSION_SECRET,
        "SMALL_TRANSFERS_BASE_URL": emulator.url,
        **overrides,
    }


def new_customer(
    emulator: Emulator,
    *,
    limit_micros: int = 1_000_000,
    first_name: str = "Test",
    last_name: str | None = None,
    email: str | None = None,
) -> EmulatorCustomer:
    """A fresh test customer with a spending limit (default 1 USD).

    Names default to unique ones, so each test reads a ledger of its own.
    """
    tag = secrets.token_hex(4)
    return emulator.create_customer(
        first_name=first_name,
        last_name=last_name if last_name is not None else f"Customer {tag}",
        email=email if email is not None else f"test-{tag}@example.com",
        limit_micros=limit_micros,
    )


def ledger(emulator: Emulator, customer: EmulatorCustomer | None = None) -> list[ChargeRecord]:
    """Every ledger row (optionally of one customer), oldest first."""
    return emulator.ledger(customer.id if customer is not None else None)


def charges(emulator: Emulator, customer: EmulatorCustomer | None = None) -> list[int]:
    """The amounts actually taken (captured), in micros, oldest first.

    ``charges(emu, ada) == [3000]`` reads "this charged 3000 micros, once".
    Authorizations that were not captured (yet) are not money taken: see
    :func:`ledger` for those.
    """
    return [
        row.captured_micros
        for row in ledger(emulator, customer)
        if row.captured_micros is not None and row.state == "captured"
    ]


try:
    import pytest
except ImportError:  # pragma: no cover - the kit works without pytest
    pass
else:

    @pytest.fixture(scope="session")
    def st_emulator() -> Iterator[Emulator]:
        """A Small Transfers emulator on 127.0.0.1 for the whole test session."""
        with Emulator(port=0) as emulator:
            yield emulator

    @pytest.fixture
    def st_customer(st_emulator: Emulator) -> EmulatorCustomer:
        """A fresh customer (1 USD spending limit) for one test."""
        return new_customer(st_emulator)

    @pytest.fixture
    def st_env(st_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
        """``SMALL_TRANSFERS_*`` set for this test, pointing at ``st_emulator``.

        Import an app that wraps itself at import time inside the test (or a
        fixture that uses this one), so it reads these.
        """
        env = emulator_env(st_emulator)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env
