"""Behind a TLS-terminating reverse proxy, with the configuration a merchant would write.

The proxy is simulated by sending its headers from 127.0.0.1 (where it
would run), for the two common setups:

- (a) it keeps ``Host`` (nginx ``proxy_set_header Host $host``) and sends
  ``X-Forwarded-Proto: https`` and ``X-Forwarded-For``;
- (b) it sends its upstream's address as ``Host`` and the visitor's host in
  ``X-Forwarded-Host``, with the same two others.

Each server handles some of those headers itself (probed here on the
versions installed): uvicorn believes ``-Proto`` and ``-For`` from
``--forwarded-allow-ips`` (default 127.0.0.1) and then reports the
*visitor* as the client; gunicorn believes ``-Proto`` from
``--forwarded-allow-ips`` and keeps ``REMOTE_ADDR``; waitress believes what
``--trusted-proxy-headers`` names from ``--trusted-proxy`` and, without one,
deletes every ``X-Forwarded-*`` header; daphne's ``--proxy-headers`` believes
``-Proto`` and ``-For`` from anyone; hypercorn handles none. None of them
handles ``X-Forwarded-Host`` except waitress. The middleware's
``trusted_proxies`` believes ``-Proto``/``-Host`` only when the client
address it is given is listed.

For every (server, setup) the recommended configuration, and the alternatives
the README table names, must give a sign-in ``redirect_uri`` of
``https://public.example/smalltransfers/callback``, ``Secure`` cookies named
``__Host-...``, and a working signed-in visit; the traps show what the
obvious guess gives today.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from stack_support import (
    Served,
    Servers,
    Spec,
    daphne,
    gunicorn,
    hypercorn,
    rows,
    uvicorn,
    waitress,
)

from st_middleware import testing as kit
from st_middleware.emulator import Emulator

pytestmark = pytest.mark.slow

PUBLIC = "https://public.example"
CALLBACK = f"{PUBLIC}/smalltransfers/callback"
VISITOR = "203.0.113.7"
PROXY_ONLY = {"trusted_proxies": ["127.0.0.1"]}
ASGI, WSGI = "stack_proxy_app:asgi", "stack_proxy_app:wsgi"
WAITRESS_PROXY = (
    "--trusted-proxy=127.0.0.1",
    "--trusted-proxy-headers=x-forwarded-proto x-forwarded-host x-forwarded-for",
)

#: The recommended configuration per (server, setup).
RECOMMENDED: dict[tuple[str, str], Spec] = {
    # uvicorn's defaults believe the proxy on 127.0.0.1 (--forwarded-allow-ips
    # names its address otherwise): https, and the kept Host is right.
    ("uvicorn", "a"): Spec("uvicorn", uvicorn(ASGI)),
    # X-Forwarded-Host is uvicorn's blind spot and it hides the proxy's
    # address from trusted_proxies: name the registered callback URL.
    ("uvicorn", "b"): Spec("uvicorn+redirect_uri", uvicorn(ASGI), {"redirect_uri": CALLBACK}),
    ("gunicorn", "a"): Spec("gunicorn", gunicorn(WSGI)),
    # gunicorn keeps REMOTE_ADDR = the proxy, so trusted_proxies can see it.
    ("gunicorn", "b"): Spec("gunicorn+trusted_proxies", gunicorn(WSGI), PROXY_ONLY),
    ("waitress", "a"): Spec("waitress+trusted-proxy", waitress(WSGI, *WAITRESS_PROXY)),
    ("waitress", "b"): Spec("waitress+trusted-proxy", waitress(WSGI, *WAITRESS_PROXY)),
    ("daphne", "a"): Spec("daphne+proxy-headers", daphne(ASGI, "--proxy-headers")),
    # Without --proxy-headers daphne keeps the proxy as the client: the
    # middleware believes both headers from it (daphne would believe anyone).
    ("daphne", "b"): Spec("daphne+trusted_proxies", daphne(ASGI), PROXY_ONLY),
    ("hypercorn", "a"): Spec("hypercorn+trusted_proxies", hypercorn(ASGI), PROXY_ONLY),
    ("hypercorn", "b"): Spec("hypercorn+trusted_proxies", hypercorn(ASGI), PROXY_ONLY),
}
#: Alternatives the README table mentions, checked the same way.
ALTERNATIVES: dict[tuple[str, str], Spec] = {
    # Keep uvicorn from touching the headers: the middleware sees the proxy.
    ("uvicorn", "b"): Spec(
        "uvicorn--no-proxy-headers+trusted_proxies", uvicorn(ASGI, "--no-proxy-headers"), PROXY_ONLY
    ),
    ("daphne", "b"): Spec(
        "daphne+proxy-headers+redirect_uri",
        daphne(ASGI, "--proxy-headers"),
        {"redirect_uri": CALLBACK},
    ),
}
TRAPS = {
    "uvicorn": Spec("uvicorn+trusted_proxies", uvicorn(ASGI), PROXY_ONLY),
    "waitress": Spec("waitress+trusted_proxies", waitress(WSGI), PROXY_ONLY),
}


@pytest.fixture(scope="module")
def stack_emulator() -> Iterator[Emulator]:
    """An emulator that accepts the public callback URL (and only it) as redirect URI."""
    with Emulator(port=0, redirect_uris=[CALLBACK]) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def started(servers: Servers) -> dict[str, Served]:
    every = [*RECOMMENDED.values(), *ALTERNATIVES.values(), *TRAPS.values()]
    specs = {spec.name: spec for spec in every}
    return {served.spec.name: served for served in servers.start(*specs.values())}


def proxy_headers(server: Served, setup: str, *, forwarded_for: bool = True) -> dict[str, str]:
    """What the proxy adds to a visitor's request before passing it to ``server``."""
    headers = {"X-Forwarded-Proto": "https"}
    if forwarded_for:
        headers["X-Forwarded-For"] = VISITOR
    if setup == "a":
        headers["Host"] = "public.example"
    else:
        headers["Host"] = f"127.0.0.1:{server.port}"  # nginx's default: proxy_pass's address
        headers["X-Forwarded-Host"] = "public.example"
    return headers


@dataclass(frozen=True)
class SetCookie:
    name: str
    value: str
    attributes: frozenset[str]

    @classmethod
    def parse(cls, header: str) -> SetCookie:
        pair, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = pair.partition("=")
        return cls(name, value, frozenset(attribute.lower() for attribute in attributes))


def set_cookie(response: httpx.Response) -> SetCookie:
    [header] = response.headers.get_list("set-cookie")
    return SetCookie.parse(header)


def sign_in_start(server: Served, headers: dict[str, str]) -> tuple[str, str, SetCookie]:
    """``GET /smalltransfers/sign-in`` through the proxy: redirect_uri, state, state cookie."""
    with server.client(headers=headers) as client:
        start = client.get("/smalltransfers/sign-in", params={"next": "/paid"})
    assert start.status_code == 303, (start.status_code, server.tail())
    query = parse_qs(urlsplit(start.headers["location"]).query)
    return query["redirect_uri"][0], query["state"][0], set_cookie(start)


def assert_host_cookie(cookie: SetCookie, base: str) -> None:
    """``Secure`` and ``__Host-`` named (which also requires ``Path=/`` and no ``Domain``)."""
    assert cookie.name == f"__Host-{base}", cookie
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= cookie.attributes, cookie
    assert not any(attribute.startswith("domain=") for attribute in cookie.attributes)


CASES = [
    *((name, setup, spec.name) for (name, setup), spec in sorted(RECOMMENDED.items())),
    *((name, setup, spec.name) for (name, setup), spec in sorted(ALTERNATIVES.items())),
]


@pytest.mark.parametrize(("name", "setup", "config"), CASES)
def test_configuration_gives_the_public_https_origin_and_host_cookies(
    name: str, setup: str, config: str, started: dict[str, Served], stack_emulator: Emulator
) -> None:
    server = started[config]
    headers = proxy_headers(server, setup)
    redirect_uri, state, state_cookie = sign_in_start(server, headers)
    assert redirect_uri == CALLBACK
    assert_host_cookie(state_cookie, "st_state")

    # The rest of the visit, as the browser (on https://public.example) and the proxy send it.
    customer = kit.new_customer(stack_emulator)
    code = stack_emulator.issue_code(customer_id=customer.id, redirect_uri=redirect_uri)
    cookie = {"Cookie": f"{state_cookie.name}={state_cookie.value}"}
    with server.client(headers={**headers, **cookie}) as client:
        done = client.get("/smalltransfers/callback", params={"code": code, "state": state})
    assert done.status_code == 303, (done.text, server.tail())
    assert done.headers["location"] == "/paid"
    session = next(
        SetCookie.parse(header)
        for header in done.headers.get_list("set-cookie")
        if "st_session" in header
    )
    assert_host_cookie(session, "st_session")

    with server.client(headers={**headers, "Cookie": f"{session.name}={session.value}"}) as client:
        paid = client.get("/paid")
    assert (paid.status_code, paid.text) == (200, f"paid by {customer.id}"), server.tail()
    assert rows(stack_emulator, customer) == [("transaction", "captured", 2000)]


def test_trap_uvicorn_reports_the_visitor_as_client_so_trusted_proxies_never_sees_the_proxy(
    started: dict[str, Served],
) -> None:
    """uvicorn's defaults + ``trusted_proxies=["127.0.0.1"]``: what happens today.

    uvicorn believes the proxy on 127.0.0.1 and replaces ``scope["client"]``
    with the ``X-Forwarded-For`` address, so the middleware sees the visitor,
    who is not listed, and ignores ``X-Forwarded-Host``: setup (b) gets the
    upstream's address in its ``redirect_uri`` (https only thanks to uvicorn).
    """
    server = started[TRAPS["uvicorn"].name]
    redirect_uri, _, state_cookie = sign_in_start(server, proxy_headers(server, "b"))
    assert redirect_uri == f"https://127.0.0.1:{server.port}/smalltransfers/callback"
    assert state_cookie.name == "__Host-st_state"  # Secure: the scheme is uvicorn's https
    # The very same request without X-Forwarded-For: the client stays 127.0.0.1.
    redirect_uri, _, _ = sign_in_start(server, proxy_headers(server, "b", forwarded_for=False))
    assert redirect_uri == CALLBACK


def test_trap_waitress_without_trusted_proxy_deletes_the_forwarded_headers(
    started: dict[str, Served],
) -> None:
    """waitress's defaults + ``trusted_proxies=["127.0.0.1"]``: what happens today.

    Without ``--trusted-proxy`` waitress removes every ``X-Forwarded-*``
    header (``clear_untrusted_proxy_headers``) before the app, so the
    middleware has nothing to believe: plain http in both setups.
    """
    server = started[TRAPS["waitress"].name]
    redirect_uri, _, state_cookie = sign_in_start(server, proxy_headers(server, "b"))
    assert redirect_uri == f"http://127.0.0.1:{server.port}/smalltransfers/callback"
    assert state_cookie.name == "st_state"
    assert "secure" not in state_cookie.attributes  # plain http on loopback
    redirect_uri, _, state_cookie = sign_in_start(server, proxy_headers(server, "a"))
    assert redirect_uri == "http://public.example/smalltransfers/callback"
    assert state_cookie.name == "__Host-st_state"  # Secure anyway: not a loopback host
