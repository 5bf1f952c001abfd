"""Reverse proxies: ``X-Forwarded-Proto``/``-Host`` count only from a listed proxy.

The client address is ``REMOTE_ADDR`` (WSGI) or ``scope["client"]`` (ASGI).
Whoever else sends those headers could otherwise choose the cookie flags and
the sign-in ``redirect_uri``. Behind a TLS-terminating proxy that *is* listed,
cookies are ``Secure`` with the ``__Host-`` name and ``redirect_uri`` is https.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from ._support import (
    CALLBACK,
    FIGURES,
    SIGN_IN,
    SIGN_OUT,
    AppLog,
    Resp,
    SetCookie,
    UvicornThread,
    WaitressThread,
    emulator_keywords,
    new_customer,
    recording_asgi_app,
    recording_wsgi_app,
    sign_in,
)

PROXY = "10.0.0.1"
STRANGER = "10.0.0.2"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}


def _tally(**counts: int) -> None:
    FIGURES.add("proxies", {"cases": 1, **counts})


def _redirect_uri(answer: Resp) -> str:
    assert answer.status == 303, (answer.status, answer.body[:200])
    return parse_qs(urlsplit(answer.location or "").query)["redirect_uri"][0]


def _state_cookie(answer: Resp) -> SetCookie:
    cookie = answer.cookie(("st_state", "__Host-st_state"))
    assert cookie is not None
    return cookie


def _as_visitor_direct(answer: Resp) -> None:
    """What an answer looks like when the forwarded headers were ignored (Host localhost:8000)."""
    assert _redirect_uri(answer) == "http://localhost:8000/smalltransfers/callback"
    cookie = _state_cookie(answer)
    assert cookie.name == "st_state"
    assert "secure" not in cookie.attrs


def _as_visitor_via_tls_proxy(answer: Resp) -> None:
    assert _redirect_uri(answer) == "https://shop.example/smalltransfers/callback"
    cookie = _state_cookie(answer)
    assert cookie.name == "__Host-st_state"
    assert "secure" in cookie.attrs
    assert cookie.attrs["path"] == "/"
    assert "domain" not in cookie.attrs


def test_forwarded_headers_are_ignored_without_trusted_proxies(make: Any) -> None:
    driver = make()
    for client in (PROXY, STRANGER, "127.0.0.1"):
        answer = driver.get(SIGN_IN, host="localhost:8000", client=client, headers=FORWARDED)
        _as_visitor_direct(answer)
    _tally(**{"requests": 3})


def test_forwarded_headers_count_only_from_a_listed_proxy(make: Any) -> None:
    driver = make(trusted_proxies=[PROXY])
    via_proxy = driver.get(SIGN_IN, host="localhost:8000", client=PROXY, headers=FORWARDED)
    _as_visitor_via_tls_proxy(via_proxy)
    forged = driver.get(SIGN_IN, host="localhost:8000", client=STRANGER, headers=FORWARDED)
    _as_visitor_direct(forged)

    # The 401's sign_in_url is built on the same origin.
    problem = driver.get("/paid", host="localhost:8000", client=PROXY, headers=FORWARDED).json()
    assert problem["sign_in_url"].startswith("https://shop.example/smalltransfers/sign-in?")
    problem = driver.get("/paid", host="localhost:8000", client=STRANGER, headers=FORWARDED)
    assert problem.json()["sign_in_url"].startswith("http://localhost:8000/smalltransfers/")
    _tally(**{"requests": 4})


def test_wildcard_trusts_every_client(make: Any) -> None:
    driver = make(trusted_proxies="*")
    for client in (PROXY, STRANGER):
        answer = driver.get(SIGN_IN, host="localhost:8000", client=client, headers=FORWARDED)
        _as_visitor_via_tls_proxy(answer)
    _tally(**{"requests": 2})


@pytest.mark.parametrize(
    ("proto", "forwarded_host", "scheme", "host"),
    [
        # Appended chains: the right-most value is the one the trusted proxy wrote.
        ("http, https", "evil.example, shop.example", "https", "shop.example"),
        ("HTTPS", None, "https", "localhost:8000"),
        ("ftp", "shop.example", "http", "shop.example"),
        ("", "", "http", "localhost:8000"),
        (None, "  ", "http", "localhost:8000"),
    ],
)
def test_proxy_chains_and_odd_values(
    make: Any, proto: str | None, forwarded_host: str | None, scheme: str, host: str
) -> None:
    """The first (client-most) value wins; a scheme other than http(s) is ignored."""
    driver = make(trusted_proxies=[PROXY])
    headers = {}
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    if forwarded_host is not None:
        headers["X-Forwarded-Host"] = forwarded_host
    answer = driver.get(SIGN_IN, host="localhost:8000", client=PROXY, headers=headers)
    assert _redirect_uri(answer) == f"{scheme}://{host}/smalltransfers/callback"
    _tally()


@pytest.mark.parametrize(
    "garbage", ["evil.com/path", "a b", "shop.example@evil.com", "x" * 300 + ":99999999"]
)
def test_garbage_forwarded_host_from_a_listed_proxy_is_a_400(make: Any, garbage: str) -> None:
    driver = make(trusted_proxies=[PROXY])
    answer = driver.get(
        SIGN_IN, host="localhost:8000", client=PROXY, headers={"X-Forwarded-Host": garbage}
    )
    assert answer.status == 400
    assert answer.location is None
    assert answer.cookie(("st_state", "__Host-st_state")) is None
    _tally()


def test_full_flow_behind_a_tls_terminating_proxy(make: Any, emu: Any) -> None:
    """The proxy talks to the app over loopback http; the visitor used https://shop.example."""
    driver = make(trusted_proxies=["127.0.0.1"])
    where = {"host": "127.0.0.1:8000", "client": "127.0.0.1", "headers": FORWARDED}
    customer = new_customer(emu)
    session = sign_in(driver, emu, customer, **where)
    assert session.name == "__Host-st_session"
    assert "secure" in session.attrs
    assert session.attrs["path"] == "/"
    assert "domain" not in session.attrs

    paid = driver.get("/paid", cookie=session.pair, **where)
    assert paid.status == 200
    assert paid.customer == customer.id
    assert len(emu.ledger(customer.id)) == 1

    # The same cookie straight to the backend (no proxy headers) is not read:
    # there the origin is plain http on loopback, whose cookie has another name.
    direct = driver.get("/paid", cookie=session.pair, host="127.0.0.1:8000", client="127.0.0.1")
    assert direct.status == 401

    out = driver.get(SIGN_OUT, cookie=session.pair, **where)
    cleared = out.session
    assert cleared is not None
    assert cleared.clears
    assert cleared.name == "__Host-st_session"
    assert "secure" in cleared.attrs
    _tally(**{"requests": 6})


def test_proxy_without_forwarded_headers_still_gets_secure_cookies(make: Any) -> None:
    """A TLS proxy that passes the public Host but no X-Forwarded-Proto: http on a
    non-loopback host is Secure by rule, so the proxy can never strip the flag."""
    driver = make()
    answer = driver.get(SIGN_IN, host="shop.example", client=PROXY)
    cookie = _state_cookie(answer)
    assert cookie.name == "__Host-st_state"
    assert "secure" in cookie.attrs
    _tally()


def test_configured_redirect_uri_and_forced_secure_ignore_every_header(make: Any) -> None:
    """The belt-and-braces set-up for a proxy that rewrites Host to loopback."""
    driver = make(
        redirect_uri="https://shop.example/smalltransfers/callback",
        secure_cookies=True,
        trusted_proxies=[PROXY],
    )
    for client, headers in ((STRANGER, {"X-Forwarded-Host": "evil.example"}), (PROXY, {})):
        answer = driver.get(SIGN_IN, host="127.0.0.1:8000", client=client, headers=headers)
        _as_visitor_via_tls_proxy(answer)
    _tally(**{"requests": 2})


# -- through real servers -------------------------------------------------------------------


def _asgi_site(emu: Any, **options: Any) -> Any:
    from st_middleware import SmallTransfersASGI

    return SmallTransfersASGI(recording_asgi_app(AppLog()), **emulator_keywords(emu, **options))


def _wsgi_site(emu: Any, **options: Any) -> Any:
    from st_middleware import SmallTransfersWSGI

    return SmallTransfersWSGI(recording_wsgi_app(AppLog()), **emulator_keywords(emu, **options))


@pytest.mark.parametrize("server", ["uvicorn", "waitress"])
def test_real_servers_pass_the_peer_address_as_the_client(emu: Any, server: str) -> None:
    """Over a real socket the peer (127.0.0.1 here) is what ``trusted_proxies`` matches.

    The servers' own proxy-header handling is switched off (uvicorn's
    ``proxy_headers``, waitress's ``clear_untrusted_proxy_headers``) so the
    middleware alone decides; SECURITY.md says how they combine.
    """
    results: dict[str, str] = {}
    for label, trusted in (("trusted", ["127.0.0.1"]), ("untrusted", [PROXY])):
        if server == "uvicorn":
            app = _asgi_site(emu, trusted_proxies=trusted)
            runner: Any = UvicornThread(app)
            runner.server.config.proxy_headers = False
        else:
            app = _wsgi_site(emu, trusted_proxies=trusted)
            # waitress strips X-Forwarded-* itself unless told otherwise (its own
            # defence); switched off so that the middleware alone decides.
            runner = WaitressThread(app, threads=2, clear_untrusted_proxy_headers=False)
        with runner, httpx.Client(base_url=runner.url, timeout=20) as client:
            answer = client.get(
                SIGN_IN + "?" + urlencode({"next": "/"}),
                headers={"Host": "localhost:8000", **FORWARDED},
            )
            assert answer.status_code == 303
            query = parse_qs(urlsplit(answer.headers["location"]).query)
            results[label] = query["redirect_uri"][0]
        if server == "waitress":
            app.close()
    assert results["trusted"] == "https://shop.example" + CALLBACK
    assert results["untrusted"] == "http://localhost:8000" + CALLBACK
    _tally(**{"real-server requests": 2})


def test_repeated_forwarded_host_lines_mean_the_same_on_both_adapters(emu: Any) -> None:
    """The proxy wrote the right-most value; the client-most one is whatever the client sent."""
    from ._support import make_driver

    results = {}
    for kind in ("wsgi", "asgi"):
        driver = make_driver(kind, emu, trusted_proxies=[PROXY])
        try:
            if kind == "wsgi":
                # What waitress (and other WSGI servers) make of two header lines.
                headers = {"X-Forwarded-Host": "evil.example, shop.example"}
                answer = driver.get(SIGN_IN, host="internal:8000", client=PROXY, headers=headers)
            else:
                answer = _asgi_two_lines(driver)
            results[kind] = _redirect_uri(answer)
        finally:
            driver.close()
    assert results["wsgi"] == results["asgi"] == "http://shop.example" + CALLBACK


def _asgi_two_lines(driver: Any) -> Resp:
    import asyncio

    async def call() -> Resp:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": SIGN_IN,
            "raw_path": SIGN_IN.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"internal:8000"),
                (b"x-forwarded-host", b"evil.example"),
                (b"x-forwarded-host", b"shop.example"),
            ],
            "client": (PROXY, 5000),
            "server": ("internal", 8000),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await driver.mw(scope, receive, send)
        await driver.mw.aclose()
        headers = [(k.decode(), v.decode()) for k, v in sent[0]["headers"]]
        return Resp(sent[0]["status"], headers, b"")

    return asyncio.run(call())
