"""The capture follows the answer: an app that finished its response is captured.

Background tasks (Starlette/FastAPI run them after the last body message) and a
``close()`` that raises after the last chunk do not undo a delivered answer;
and a priced download keeps the server's ``wsgi.file_wrapper`` (sendfile).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any
from wsgiref.util import FileWrapper, setup_testing_defaults

import pytest

from helpers import Site, charges, middleware_options, sign_in
from st_middleware import SmallTransfersWSGI

pytestmark = pytest.mark.anyio

MakeSite = Callable[..., Site]
AI = {"/ai": 5000}


def jar(site: Site) -> str:
    return "; ".join(f"{k}={v}" for k, v in site.jar.items())


# -- ASGI: the last body message is the end ---------------------------------------------


@pytest.fixture
def kind() -> str:
    return "asgi"


def background_app(
    then: Callable[[], Any], emu: Any, customer: Any, seen: list[Any]
) -> Callable[..., Any]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["smalltransfers.charge"].capture_micros = 1500
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        # Like Starlette's BackgroundTasks: after the answer is out.
        seen.append([row.captured_micros for row in charges(emu, customer)])
        await then()

    return app


async def call(site: Site) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ai",
        "raw_path": b"/ai",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"cookie", jar(site).encode())],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await site.mw(scope, receive, send)
    return sent


async def test_a_background_task_that_raises_does_not_undo_the_capture(
    make_site: MakeSite, emu: Any, customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom() -> None:
        raise RuntimeError("the e-mail server is down")

    seen: list[Any] = []
    site = make_site(
        app=background_app(boom, emu, customer, seen),
        pricing=AI,
        charge_mode="authorize-capture",
    )
    await sign_in(site, emu, customer)
    with pytest.raises(RuntimeError, match="e-mail"):
        await call(site)
    assert seen == [[1500]]  # captured before the background task ran
    assert [row.captured_micros for row in charges(emu, customer)] == [1500]
    assert "after its response was complete" in caplog.text


async def test_the_capture_does_not_wait_for_a_slow_background_task(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    seen: list[Any] = []
    site = make_site(
        app=background_app(lambda: asyncio.sleep(0.2), emu, customer, seen),
        pricing=AI,
        charge_mode="authorize-capture",
    )
    await sign_in(site, emu, customer)
    await call(site)
    assert seen == [[1500]]


async def test_an_app_that_raises_before_its_last_body_is_not_captured(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("crashed mid-answer")

    site = make_site(app=app, pricing=AI, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    with pytest.raises(RuntimeError):
        await call(site)
    (row,) = charges(emu, customer)
    assert row.state == "authorized"


# -- WSGI: close() after the last chunk, and the server's file wrapper -----------------------


def wsgi_call(site: Site, file_wrapper: Any = None) -> tuple[Any, dict[str, Any]]:
    environ: dict[str, Any] = {
        "PATH_INFO": "/ai",
        "SCRIPT_NAME": "",
        "HTTP_HOST": "localhost",
        "HTTP_COOKIE": jar(site),
        "QUERY_STRING": "",
    }
    setup_testing_defaults(environ)
    if file_wrapper is not None:
        environ["wsgi.file_wrapper"] = file_wrapper
    return site.mw(environ, lambda status, headers, exc_info=None: None), environ


@pytest.mark.parametrize("kind", ["wsgi"])
async def test_a_close_that_raises_after_the_last_chunk_is_still_captured(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    class Body:
        def __init__(self, environ: dict[str, Any]) -> None:
            environ["smalltransfers.charge"].capture_micros = 700

        def __iter__(self) -> Any:
            return iter([b"all ", b"of it"])

        def close(self) -> None:
            raise RuntimeError("cleanup failed")

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body(environ)

    site = make_site(app=app, pricing=AI, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    body, _ = wsgi_call(site)
    assert b"".join(body) == b"all of it"
    with pytest.raises(RuntimeError, match="cleanup"):
        body.close()
    assert [row.captured_micros for row in charges(emu, customer)] == [700]


@pytest.mark.parametrize("kind", ["wsgi"])
async def test_a_priced_download_keeps_the_servers_file_wrapper(
    make_site: MakeSite, emu: Any, customer: Any
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 10_000), 4096)

    site = make_site(pricing=AI, charge_mode="authorize-capture")
    await sign_in(site, emu, customer)
    # The app straight under the middleware (no validator in between), as in production.
    site.mw = SmallTransfersWSGI(
        app, **middleware_options(emu, pricing=AI, charge_mode="authorize-capture")
    )
    body, _ = wsgi_call(site, FileWrapper)
    # What gunicorn checks before using sendfile(): the app's own wrapper object.
    assert isinstance(body, FileWrapper)
    assert charges(emu, customer)[0].state == "authorized"
    body.close()
    body.close()  # servers may close twice: one capture
    assert [row.captured_micros for row in charges(emu, customer)] == [5000]
