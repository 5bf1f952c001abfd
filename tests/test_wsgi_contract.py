"""Protocol manners of the WSGI adapter: wsgiref.validate, close(), streaming, request bodies.

The contract rows shared with ASGI live in test_flows_common.py (run for both
adapters); here is what only WSGI has.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
import webtest

from helpers import (
    BROWSER,
    CALLBACK,
    JSON,
    OTHER_SECRET,
    PRICE,
    SECRET,
    SIGN_IN,
    SIGN_OUT,
    WSGISite,
    charges,
    issue_code,
    middleware_options,
    new_customer,
    sign_in,
    start_sign_in,
)
from st_middleware import ConfigurationError, SmallTransfersWSGI

pytestmark = pytest.mark.anyio


@pytest.fixture
def kind() -> str:
    """Sites made in this module are WSGI sites."""
    return "wsgi"


MakeSite = Callable[..., WSGISite]


def environ_for(path: str, cookie: str = "", method: str = "GET", body: bytes = b"") -> dict:
    """A complete WSGI environ, as a server would build it."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "HTTP_HOST": "localhost",
        "HTTP_ACCEPT": BROWSER,
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "text/plain"
    setup_testing_defaults(environ)
    if body:
        environ["wsgi.input"] = io.BytesIO(body)
    return environ


class StartResponse:
    """A server's start_response that remembers what it was given."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None


def jar_cookie(site: WSGISite) -> str:
    return "; ".join(f"{k}={v}" for k, v in site.jar.items())


# -- wsgiref.validate on the server's side ------------------------------------------------

# Each kind of answer: (who is signed in, fault, URL, Accept, expected status). The
# request goes through wsgiref.validate around the middleware, and around the app.
ANSWERS: dict[str, tuple[str | None, str | None, str, str, int]] = {
    "free page": ("customer", None, "/free", BROWSER, 200),
    "paid page": ("customer", None, "/paid", BROWSER, 200),
    "sign-in required (browser)": (None, None, "/paid", BROWSER, 401),
    "sign-in required (API)": (None, None, "/paid", JSON, 401),
    "payment refused": ("poor customer", None, "/paid", BROWSER, 402),
    "outage": ("customer", "maintenance_mode", "/paid", BROWSER, 503),
    "failed callback": (None, None, CALLBACK + "?code=nope&state=nope", BROWSER, 400),
    "sign-in redirect": (None, None, SIGN_IN + "?next=/paid", BROWSER, 303),
    "callback redirect": (None, None, "(the callback of a fresh sign-in)", BROWSER, 303),
    "sign-out redirect": ("customer", None, SIGN_OUT, BROWSER, 303),
}


@pytest.mark.parametrize("which", list(ANSWERS))
async def test_every_answer_passes_wsgiref_validate_on_both_sides(
    make_site: MakeSite, emu: Any, which: str
) -> None:
    who, fault, url, accept, expected = ANSWERS[which]
    site = make_site()
    if who is not None:
        limit = PRICE - 1 if who == "poor customer" else 10**6
        await sign_in(site, emu, new_customer(emu, limit_micros=limit))
    if url.startswith("(the callback"):
        _, params = await start_sign_in(site)
        code = issue_code(emu, new_customer(emu), params["redirect_uri"])
        url = f"{CALLBACK}?code={code}&state={params['state']}"
    if fault is not None:
        emu.set_faults(count=1, error=fault)
    strict = webtest.TestApp(validator(site.mw), lint=False)
    headers = {"Accept": accept, "Cookie": jar_cookie(site)}
    res = strict.get(url, headers=headers, status="*", expect_errors=True)
    if which == "failed callback":
        assert 400 <= res.status_int < 500
    else:
        assert res.status_int == expected


# -- close() on the app's iterable ----------------------------------------------------------


CLOSE_CASES = [
    "anonymous free page",
    "signed-in free page",
    "paid page",
    "paid page with a resealed cookie",
    "authorize-capture",
    "authorize-capture, app answers 500",
]


@pytest.mark.parametrize("case", CLOSE_CASES)
async def test_the_apps_iterable_is_closed_once(
    make_site: MakeSite, emu: Any, customer: Any, case: str
) -> None:
    options: dict[str, Any] = {}
    if "authorize-capture" in case:
        options["charge_mode"] = "authorize-capture"
    if "resealed" in case:
        options["session_secret"] = [OTHER_SECRET, SECRET]
    site = make_site(**options)
    if case != "anonymous free page":
        signer = make_site(session_secret=SECRET) if "resealed" in case else site
        await sign_in(signer, emu, customer)
        site.jar.update(signer.jar)
    path = "/free" if "free" in case else "/paid"
    query = "status=500" if "500" in case else ""
    reply = await site.get(path, query)
    assert reply.status == (500 if "500" in case else 200)
    assert len(site.calls) == 1
    assert site.calls.closed == 1


async def test_the_apps_iterable_is_closed_even_when_the_server_stops_early(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site(charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    result = site.mw(environ_for("/paid", jar_cookie(site)), StartResponse())
    result.close()  # the visitor went away before the first byte
    assert site.calls.closed == 1


# -- streaming -------------------------------------------------------------------------


class Streamer:
    """An app that streams its answer in chunks and, like the AI starter, sets the
    final price once the work is done."""

    def __init__(self, chunks: int = 3, capture: int | None = None) -> None:
        self.produced: list[bytes] = []
        self.chunks = chunks
        self.capture = capture
        self.closed = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        charge = environ["smalltransfers.charge"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return self._body(charge)

    def _body(self, charge: Any) -> Iterator[bytes]:
        try:
            for i in range(self.chunks):
                chunk = f"chunk {i}\n".encode()
                self.produced.append(chunk)
                yield chunk
            if self.capture is not None and charge is not None:
                charge.capture_micros = self.capture
        finally:
            self.closed = True


@pytest.mark.parametrize("mode", ["transaction", "authorize-capture"])
async def test_a_streamed_body_passes_through_chunk_by_chunk(
    make_site: MakeSite, emu: Any, customer: Any, mode: str
) -> None:
    app = Streamer()
    site = make_site(app=app, charge_mode=mode)
    await sign_in(site, emu, customer)
    start = StartResponse()
    result = site.mw(environ_for("/paid", jar_cookie(site)), start)
    chunks = iter(result)
    assert next(chunks) == b"chunk 0\n"
    assert app.produced == [b"chunk 0\n"], "the middleware read ahead (buffered the body)"
    assert list(chunks) == [b"chunk 1\n", b"chunk 2\n"]
    result.close()
    assert app.closed
    assert start.status == "200 OK"


async def test_the_capture_waits_for_the_end_of_the_streamed_answer(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    app = Streamer(capture=1200)
    site = make_site(app=app, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    result = site.mw(environ_for("/paid", jar_cookie(site)), StartResponse())
    assert list(result) == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"]
    (row,) = charges(emu, customer)
    assert row.state == "authorized"  # not before the server closes the response
    result.close()
    (row,) = charges(emu, customer)
    assert (row.authorized_micros, row.captured_micros, row.state) == (PRICE, 1200, "captured")


async def test_the_request_body_reaches_the_app_of_a_paid_post(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    received: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        received.append(environ["wsgi.input"].read(length))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    site = make_site(app=app, pricing={"POST /upload": PRICE})
    await sign_in(site, emu, customer)
    res = site.client.post(
        "/upload",
        params=b"the uploaded bytes",
        headers={"Cookie": jar_cookie(site), "Content-Type": "application/octet-stream"},
    )
    assert res.status_int == 200
    assert received == [b"the uploaded bytes"]
    assert [r.captured_micros for r in charges(emu, customer)] == [PRICE]


async def test_an_app_exception_on_a_paid_page_reaches_the_server(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    site = make_site()
    await sign_in(site, emu, customer)
    with pytest.raises(RuntimeError, match="the app failed"):
        site.mw(
            environ_for("/paid", jar_cookie(site)) | {"QUERY_STRING": "raise=1"}, StartResponse()
        )
    assert len(charges(emu, customer)) == 1  # charged before the app ran, as documented


# -- construction -------------------------------------------------------------------------


def test_an_async_pricing_callable_is_refused_at_construction(emu: Any) -> None:
    async def pricing(request: Any) -> int:
        return PRICE

    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    with pytest.raises(ConfigurationError, match="SmallTransfersASGI"):
        SmallTransfersWSGI(app, **middleware_options(emu, pricing=pricing))


def test_close_releases_the_pooled_connections(emu: Any) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    middleware = SmallTransfersWSGI(app, **middleware_options(emu))
    middleware.close()
    middleware.close()  # idempotent
