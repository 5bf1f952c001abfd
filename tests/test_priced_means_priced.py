"""Priced means priced: every item of the red team's report, on both adapters.

Each test sends what an attacker (or an odd client, or a framework's own
redirect) sends, raw: a WSGI environ or an ASGI scope built by hand, so no
client library tidies the path or the method first. The real stacks (Flask,
Django, Starlette, FastAPI under their servers) are in tests/field/.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from helpers import (
    BROWSER,
    JSON,
    PRICE,
    SIGN_IN,
    SIGN_OUT,
    Calls,
    Reply,
    Site,
    charges,
    recording_asgi_app,
    recording_wsgi_app,
    sign_in,
)
from st_middleware import ChargeEvent, Request

pytestmark = pytest.mark.anyio

MakeSite = Callable[..., Site]
RULES = {"/paid": PRICE, "/api/*": 500, "POST /search": 2500, "GET /report": 700}


async def raw(
    site: Site,
    method: str,
    path: str,
    *,
    cookie: str | None = None,
    accept: str = JSON,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Reply:
    """One request exactly as written: ``path`` is what the server decoded, mount excluded."""
    cookie = "; ".join(f"{k}={v}" for k, v in site.jar.items()) if cookie is None else cookie
    extra = {"accept": accept, **(headers or {})}
    if cookie:
        extra["cookie"] = cookie
    if site.kind == "wsgi":
        return _wsgi(site, method, path, extra, query)
    return await _asgi(site, method, path, extra, query)


def _wsgi(site: Site, method: str, path: str, headers: dict[str, str], query: str) -> Reply:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": site.mount,
        # What a server hands over: the decoded bytes, carried as latin-1.
        "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": query,
        "HTTP_HOST": site.host,
        "wsgi.url_scheme": site.scheme,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO(b"")
    seen: dict[str, Any] = {}

    def start(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = int(status[:3]), response_headers
        return lambda data: None

    body = site.mw(environ, start)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    reply = Reply(seen["status"], list(seen["headers"]), data)
    site.keep(reply)
    return reply


async def _asgi(site: Site, method: str, path: str, headers: dict[str, str], query: str) -> Reply:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": site.scheme,
        "path": site.mount + path,
        "raw_path": (site.mount + path).encode("utf-8", "surrogateescape"),
        "root_path": site.mount,
        "query_string": query.encode(),
        "headers": [(b"host", site.host.encode())]
        + [(k.encode(), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await site.mw(scope, receive, send)
    start = sent[0]
    reply = Reply(
        start["status"],
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])],
        b"".join(m.get("body", b"") for m in sent[1:]),
    )
    site.keep(reply)
    return reply


@pytest.fixture
def shop(make_site: MakeSite) -> Site:
    return make_site(pricing=RULES)


# -- 1, 2. one canonical path ---------------------------------------------------------------

NOT_CANONICAL = ["//paid", "///paid", "paid", "//api/x", "/api//x"]


@pytest.mark.parametrize("path", NOT_CANONICAL)
async def test_a_priced_path_written_otherwise_is_sent_to_its_canonical_form(
    shop: Site, path: str
) -> None:
    reply = await raw(shop, "GET", path, query="a=1")
    assert reply.status == 308
    assert reply.location == "/" + "/".join(p for p in path.split("/") if p) + "?a=1"
    assert len(shop.calls) == 0


async def test_a_decoded_slash_is_a_slash(shop: Site) -> None:
    # /%2Fpaid: servers decode it into //paid, and routers merge it into /paid.
    reply = await raw(shop, "GET", "//paid")
    assert reply.status == 308
    assert reply.location == "/paid"


async def test_signed_in_a_variant_costs_nothing_and_its_target_costs_once(
    shop: Site, emu: Any, customer: Any
) -> None:
    await sign_in(shop, emu, customer)
    variant = await raw(shop, "GET", "//paid")
    assert variant.status == 308
    assert charges(emu, customer) == []
    assert (await raw(shop, "GET", variant.location or "")).status == 200
    assert [row.captured_micros for row in charges(emu, customer)] == [PRICE]
    assert len(shop.calls) == 1


async def test_a_mounted_variant_keeps_its_mount(make_site: MakeSite) -> None:
    site = make_site(pricing=RULES, mount="/shop")
    reply = await raw(site, "GET", "//paid")
    assert reply.status == 308
    assert reply.location == "/shop/paid"


@pytest.mark.parametrize(
    "path",
    [
        "/paid\n",
        "/paid\r",
        "/paid\x00",
        "/pa\tid",
        "/paid\x7f",
        "/free\n",
        "/paid\ufffd",
        "/x/../paid",
        "/free/../paid",
        "/./paid",
        "/paid/.",
        "/..",
        SIGN_IN + "\n",
    ],
)
async def test_a_path_no_router_reads_the_same_way_is_a_400(shop: Site, path: str) -> None:
    reply = await raw(shop, "GET", path)
    assert reply.status == 400
    assert reply.json()["code"] == "invalid_path"
    assert reply.header("Cache-Control") == "no-store"
    assert len(shop.calls) == 0


async def test_a_wsgi_path_that_is_not_utf8_is_a_400(make_site: MakeSite) -> None:
    site = make_site(pricing=RULES, kind="wsgi")
    # The bytes b"/paid\xff" as a WSGI server hands them over.
    reply = await raw(site, "GET", "/paid\udcff")
    assert reply.status == 400
    assert len(site.calls) == 0


async def test_the_400_page_for_browsers(shop: Site) -> None:
    reply = await raw(shop, "GET", "/paid\n", accept=BROWSER)
    assert reply.status == 400
    assert reply.content_type == "text/html"


async def test_next_and_our_routes_use_the_canonical_path(shop: Site) -> None:
    # Our own route written with extra slashes is still our route.
    start = await raw(shop, "GET", "/" + SIGN_IN, query="next=/paid")
    assert start.status == 303
    assert start.location is not None
    assert "/customer/authorize?" in start.location


async def test_a_pricing_callable_sees_the_canonical_request(make_site: MakeSite) -> None:
    seen: list[tuple[str, str]] = []

    def pricing(request: Request) -> int | None:
        seen.append((request.method, request.path))
        return PRICE if request.path == "/paid" else None

    site = make_site(pricing=pricing)
    assert (await raw(site, "get", "//paid")).status == 308
    assert (await raw(site, "get", "/free")).status == 200
    assert seen == [("GET", "/paid"), ("GET", "/free")]


# -- 3. OPTIONS -------------------------------------------------------------------------------

PREFLIGHT = {"origin": "https://other.example", "access-control-request-method": "GET"}


@pytest.mark.parametrize("path", ["/paid", "/api/x", "/search", "/report"])
@pytest.mark.parametrize("method", ["OPTIONS", "options"])
async def test_options_on_a_priced_path_is_answered_by_the_middleware(
    shop: Site, path: str, method: str
) -> None:
    for headers in (None, PREFLIGHT):
        reply = await raw(shop, method, path, headers=headers)
        assert reply.status == 204
        assert reply.body == b""
        assert reply.header("Access-Control-Allow-Origin") is None  # nothing configured
    assert len(shop.calls) == 0


async def test_options_on_a_free_path_reaches_the_app(shop: Site) -> None:
    assert (await raw(shop, "OPTIONS", "/free")).status == 200
    assert len(shop.calls) == 1


async def test_the_preflight_answer_carries_the_merchants_cors_headers(
    make_site: MakeSite,
) -> None:
    cors = {
        "Access-Control-Allow-Origin": "https://app.example",
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "Authorization",
        "Access-Control-Max-Age": "600",
    }
    site = make_site(pricing=RULES, preflight_headers=cors)
    reply = await raw(site, "OPTIONS", "/paid", headers=PREFLIGHT)
    assert reply.status == 204
    for name, value in cors.items():
        assert reply.header(name) == value


async def test_the_preflight_headers_may_depend_on_the_request(make_site: MakeSite) -> None:
    def cors(request: Request) -> dict[str, str] | None:
        origin = request.headers.get("origin", "")
        return {"Access-Control-Allow-Origin": origin} if origin.endswith(".example") else None

    site = make_site(pricing=RULES, preflight_headers=cors)
    ok = await raw(site, "OPTIONS", "/paid", headers=PREFLIGHT)
    assert ok.header("Access-Control-Allow-Origin") == "https://other.example"
    other = await raw(site, "OPTIONS", "/paid", headers={"origin": "https://evil.test"})
    assert other.status == 204
    assert other.header("Access-Control-Allow-Origin") is None


async def test_a_raising_preflight_policy_grants_nothing(
    make_site: MakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    def cors(request: Request) -> dict[str, str]:
        raise RuntimeError("policy store down")

    site = make_site(pricing=RULES, preflight_headers=cors)
    reply = await raw(site, "OPTIONS", "/paid", headers=PREFLIGHT)
    assert reply.status == 204
    assert reply.header("Access-Control-Allow-Origin") is None
    assert "preflight_headers raised" in caplog.text


async def test_a_rule_naming_options_prices_it_like_any_method(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(pricing={**RULES, "OPTIONS /paid": 0, "OPTIONS /api/*": 100})
    assert (await raw(site, "OPTIONS", "/paid")).status == 200  # free on purpose
    assert len(site.calls) == 1
    assert (await raw(site, "OPTIONS", "/api/x")).status == 401
    await sign_in(site, emu, customer)
    assert (await raw(site, "OPTIONS", "/api/x")).status == 200
    assert [row.captured_micros for row in charges(emu, customer)] == [100]


async def test_a_pricing_callable_prices_options_as_get(make_site: MakeSite) -> None:
    seen: list[str] = []

    def pricing(request: Request) -> int | None:
        seen.append(request.method)
        return PRICE if request.path == "/paid" else None

    site = make_site(pricing=pricing)
    assert (await raw(site, "OPTIONS", "/paid")).status == 204
    assert (await raw(site, "OPTIONS", "/free")).status == 200
    assert seen == ["GET", "GET"]
    assert len(site.calls) == 1


# -- 4, 5. methods ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("post", "/search"), ("get", "/report")])
async def test_method_rules_ignore_case(shop: Site, method: str, path: str) -> None:
    reply = await raw(shop, method, path)
    assert reply.status == 401
    assert len(shop.calls) == 0


async def test_head_is_priced_as_get(shop: Site, emu: Any, customer: Any) -> None:
    anonymous = await raw(shop, "HEAD", "/report")
    assert anonymous.status == 401
    assert len(shop.calls) == 0
    await sign_in(shop, emu, customer)
    paid = await raw(shop, "HEAD", "/report")
    assert paid.status == 200
    assert [row.captured_micros for row in charges(emu, customer)] == [700]


async def test_a_pricing_callable_sees_get_for_head(make_site: MakeSite) -> None:
    seen: list[str] = []

    def pricing(request: Request) -> int | None:
        seen.append(request.method)
        return PRICE if request.method == "GET" else None

    site = make_site(pricing=pricing)
    assert (await raw(site, "HEAD", "/anything")).status == 401
    assert seen == ["GET"]


# -- 6. a WSGI visitor who hangs up mid-stream ----------------------------------------------


def _streaming_wsgi(chunks: int) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        charge = environ["smalltransfers.charge"]

        def body() -> Iterable[bytes]:
            for n in range(1, chunks + 1):
                charge.capture_micros = n * 10
                yield b"word "

        return body()

    return app


@pytest.mark.parametrize("kind", ["wsgi"])
@pytest.mark.parametrize("read", [0, 1, 19, 20])
async def test_a_wsgi_hang_up_captures_what_was_delivered(
    make_site: MakeSite, emu: Any, customer: Any, read: int
) -> None:
    site = make_site(
        kind="wsgi",
        app=_streaming_wsgi(20),
        pricing={"/ai": PRICE},
        charge_mode="authorize-capture",
    )
    await sign_in(site, emu, customer)
    environ: dict[str, Any] = {"PATH_INFO": "/ai", "SCRIPT_NAME": "", "HTTP_HOST": "localhost"}
    environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in site.jar.items())
    setup_testing_defaults(environ)
    body = site.mw(environ, lambda status, headers, exc_info=None: None)
    chunks = iter(body)
    for _ in range(read):
        next(chunks)
    # A failed write: the server drops its iterator (GeneratorExit reaches the
    # body), then calls close() as PEP 3333 requires.
    del chunks
    gc.collect()
    body.close()
    # What the app had set when the visitor left; nothing set yet: the whole authorization.
    expected = read * 10 if read else PRICE
    assert [row.captured_micros for row in charges(emu, customer)] == [expected]


# -- 8. HEAD gets headers only -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/paid", "", 401),
        (SIGN_IN, "next=/paid", 303),
        (SIGN_OUT, "", 303),
        ("/smalltransfers/callback", "code=x&state=y", 400),
        ("//paid", "", 308),
        ("/paid\n", "", 400),
    ],
)
async def test_our_answers_to_head_have_no_body(
    shop: Site, path: str, query: str, status: int
) -> None:
    reply = await raw(shop, "HEAD", path, query=query, accept=BROWSER)
    assert reply.status == status
    assert reply.body == b""
    get = await raw(shop, "GET", path, query=query, accept=BROWSER)
    # The length of what GET would send, as HTTP wants.
    assert reply.header("Content-Length") == get.header("Content-Length")


# -- 7. shared caches ------------------------------------------------------------------------


def _cacheable(app: Callable[..., Any], kind: str) -> Any:
    """The recording app, answering with caching headers a CDN would act on."""
    extra = [
        ("Cache-Control", "public, max-age=600, s-maxage=600"),
        ("CDN-Cache-Control", "max-age=600"),
        ("Surrogate-Control", "max-age=600"),
        ("Last-Modified", "Tue, 01 Sep 2026 00:00:00 GMT"),
    ]
    if kind == "wsgi":

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                return start_response(status, headers + extra, exc_info)

            return app(environ, start)

        return wsgi

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k.lower().encode(), v.encode()) for k, v in extra]
                message = {**message, "headers": [*message["headers"], *headers]}
            await send(message)

        await app(scope, receive, sending)

    return asgi


def _site_with_cache_headers(make_site: MakeSite, kind: str, **options: Any) -> Site:
    calls = Calls()
    inner = recording_wsgi_app(calls) if kind == "wsgi" else recording_asgi_app(calls)
    site = make_site(app=_cacheable(inner, kind), pricing=RULES, **options)
    site.calls = calls
    return site


def _directives(reply: Reply) -> list[str]:
    values = reply.header_all("Cache-Control")
    assert len(values) == 1, values
    return [d.strip().lower() for d in values[0].split(",")]


async def test_a_charged_answer_is_private(
    make_site: MakeSite, kind: str, emu: Any, customer: Any
) -> None:
    site = _site_with_cache_headers(make_site, kind)
    await sign_in(site, emu, customer)
    reply = await raw(site, "GET", "/paid")
    assert reply.status == 200
    directives = _directives(reply)
    assert "private" in directives
    assert "max-age=600" in directives
    assert not [d for d in directives if d == "public" or d.startswith("s-maxage")]
    assert reply.header("CDN-Cache-Control") is None
    assert reply.header("Surrogate-Control") is None
    assert reply.header("Last-Modified") is not None


async def test_a_free_answer_keeps_its_caching(make_site: MakeSite, kind: str) -> None:
    site = _site_with_cache_headers(make_site, kind)
    reply = await raw(site, "GET", "/free")
    assert _directives(reply) == ["public", "max-age=600", "s-maxage=600"]
    assert reply.header("CDN-Cache-Control") == "max-age=600"


async def test_a_free_answer_carrying_our_cookie_is_private(make_site: MakeSite, kind: str) -> None:
    site = _site_with_cache_headers(make_site, kind)
    reply = await raw(site, "GET", "/free", cookie="st_session=garbage")
    session = reply.session_cookie()
    assert session is not None
    assert session.clears
    assert "private" in _directives(reply)
    assert "public" not in _directives(reply)


async def test_caching_paid_answers_is_an_opt_in(
    make_site: MakeSite, kind: str, emu: Any, customer: Any
) -> None:
    site = _site_with_cache_headers(make_site, kind, cache_paid_answers=True)
    await sign_in(site, emu, customer)
    reply = await raw(site, "GET", "/paid")
    assert _directives(reply) == ["public", "max-age=600", "s-maxage=600"]
    # Our cookies are never cached, opted in or not.
    cleared = await raw(site, "GET", "/free", cookie="st_session=garbage")
    assert "private" in _directives(cleared)


async def test_an_app_without_caching_headers_gets_private(
    shop: Site, emu: Any, customer: Any
) -> None:
    await sign_in(shop, emu, customer)
    reply = await raw(shop, "GET", "/paid")
    assert _directives(reply) == ["private"]


async def test_an_app_no_store_stays_no_store(make_site: MakeSite, kind: str) -> None:
    from st_middleware._answers import private_cache

    assert private_cache([("Cache-Control", "no-store"), ("X", "1")]) == [
        ("X", "1"),
        ("Cache-Control", "private, no-store"),
    ]
    assert private_cache([("cache-control", 'private="Set-Cookie", max-age=5')]) == [
        ("Cache-Control", "private, max-age=5")
    ]


# -- 9. a cancelled charge is reported ------------------------------------------------------


async def test_a_charge_cancelled_in_flight_is_reported(
    make_site: MakeSite, emu: Any, customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[ChargeEvent] = []
    site = make_site(kind="asgi", pricing=RULES, on_charge_failed=events.append)
    await sign_in(site, emu, customer)
    emu.set_faults(latency=1.0, path="/api/v1/transactions")
    caplog.set_level(logging.INFO, logger="st_middleware")
    task = asyncio.ensure_future(raw(site, "GET", "/paid"))
    await asyncio.sleep(0.3)  # the charge is in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.outcome for e in events] == ["interrupted"]
    assert events[0].amount_micros == PRICE
    assert events[0].idempotency_key
    assert "charge interrupted" in caplog.text
    assert len(site.calls) == 0


# -- 11. a mount at "/" ---------------------------------------------------------------------


async def test_a_root_path_of_slash_builds_no_double_slash(make_site: MakeSite) -> None:
    site = make_site(pricing=RULES, mount="/")
    locked = await raw(site, "GET", "paid", accept=JSON)
    if locked.status == 308:  # "paid" under "/" is "/paid" written oddly
        locked = await raw(site, "GET", "/paid", accept=JSON)
    assert locked.status == 401
    url = locked.json()["sign_in_url"]
    assert url.startswith("http://localhost/smalltransfers/sign-in?")
    out = await raw(site, "GET", SIGN_OUT)
    assert out.location == "/"


# -- 12. repeated Cookie lines joined with a comma ----------------------------------------


async def test_a_session_cookie_after_a_comma_is_found(shop: Site, emu: Any, customer: Any) -> None:
    await sign_in(shop, emu, customer)
    value = shop.session_value
    reply = await raw(shop, "GET", "/paid", cookie=f"theme=dark, st_session={value}")
    assert reply.status == 200
    assert reply.session_cookie() is None  # nothing to clear or re-seal
