"""What every example test shares: visitors, the sign-in round trip, real servers, the tests.

A *visitor* is a cookie-keeping client that never follows redirects, over a
framework's own test client or over HTTP to a real server. Paths given to a
visitor are the ones a browser sees, mount prefix included.

The round trip is the real one: the example's own "Sign In with Small
Transfers" button, the emulator's authorize form answered with *Allow*, the
callback, and back to the page the visitor first asked for.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from html import unescape
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import webtest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from helpers import hidden_fields
from st_middleware import testing as kit
from st_middleware.emulator import Customer, Emulator

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRICE = 3000
BUTTON = "Sign In with Small Transfers"
SIGN_IN = "/smalltransfers/sign-in"
CALLBACK = "/smalltransfers/callback"
SIGN_OUT = "/smalltransfers/sign-out"
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SESSION_SECRET = "examples-tests-session-secret-0123456789abcdef"


def example_env(emu: Emulator) -> dict[str, str]:
    """The SMALL_TRANSFERS_* variables that point an example at ``emu``."""
    return {
        "SMALL_TRANSFERS_BASE_URL": emu.url,
        "SMALL_TRANSFERS_PUBLISHABLE_KEY": emu.publishable_key,
        "SMALL_TRANSFERS_SECRET_KEY": emu.secret_key,
        "SMALL_TRANSFERS_SESSION_SECRET": SESSION_SECRET,
    }


# -- visitors -------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    status: int
    location: str | None
    text: str


class Visitor(Protocol):
    #: ``scheme://host[:port]`` the app is reached at (what its redirect_uri starts with).
    origin: str
    #: The mount prefix ("" or e.g. "/app").
    prefix: str

    def get(self, path: str) -> Page: ...

    def post(self, path: str) -> Page: ...


class HttpxVisitor:
    """A visitor over an ``httpx.Client``: a real server, or Starlette's ``TestClient``."""

    def __init__(self, client: httpx.Client, origin: str, prefix: str = "") -> None:
        self.client, self.origin, self.prefix = client, origin, prefix

    def _page(self, response: httpx.Response) -> Page:
        return Page(response.status_code, response.headers.get("location"), response.text)

    def get(self, path: str) -> Page:
        headers = {"Accept": HTML}
        return self._page(self.client.get(path, headers=headers, follow_redirects=False))

    def post(self, path: str) -> Page:
        headers = {"Accept": HTML}
        return self._page(self.client.post(path, headers=headers, follow_redirects=False))


class WebtestVisitor:
    """A visitor over ``webtest.TestApp`` (WSGI; it lints both sides of the app)."""

    origin = "http://localhost:80"
    prefix = ""

    def __init__(self, wsgi_app: Any) -> None:
        self.app = webtest.TestApp(wsgi_app)

    def _page(self, response: Any) -> Page:
        return Page(response.status_int, response.headers.get("Location"), response.text)

    def get(self, path: str) -> Page:
        return self._page(self.app.get(path, headers={"Accept": HTML}, expect_errors=True))

    def post(self, path: str) -> Page:
        return self._page(self.app.post(path, headers={"Accept": HTML}, expect_errors=True))


@contextmanager
def webtest_client(middleware: Any) -> Iterator[WebtestVisitor]:
    """A visitor over a WSGI app wrapped by ``SmallTransfersWSGI``; its pool closed after."""
    try:
        yield WebtestVisitor(middleware)
    finally:
        middleware.close()  # the middleware's pooled connections to Small Transfers


@contextmanager
def asgi_test_client(app: Any) -> Iterator[HttpxVisitor]:
    """A visitor over Starlette's ``TestClient`` (any ASGI app), lifespan included."""
    with warnings.catch_warnings():
        # Starlette asks for `httpx2` over `httpx`; the client works the same.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    with TestClient(app, base_url="http://localhost") as client:
        yield HttpxVisitor(client, "http://localhost")


class PortalVisitor(HttpxVisitor):
    """A visitor over ``httpx.ASGITransport``: every request on one event loop (a portal)."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal, self.async_client = portal, client
        self.origin, self.prefix = str(client.base_url).rstrip("/"), ""

    def get(self, path: str) -> Page:
        get = partial(self.async_client.get, path, headers={"Accept": HTML})
        return self._page(self.portal.call(get))

    def post(self, path: str) -> Page:
        post = partial(self.async_client.post, path, headers={"Accept": HTML})
        return self._page(self.portal.call(post))


@contextmanager
def asgi_transport_client(middleware: Any) -> Iterator[PortalVisitor]:
    """A visitor over an ASGI app wrapped by ``SmallTransfersASGI``, no lifespan needed.

    The middleware's pooled connections are closed at the end (what lifespan
    shutdown does under a server).
    """
    with start_blocking_portal() as portal:
        transport = httpx.ASGITransport(app=middleware)
        client = httpx.AsyncClient(transport=transport, base_url="http://localhost")
        try:
            yield PortalVisitor(portal, client)
        finally:
            portal.call(client.aclose)
            portal.call(middleware.aclose)


# -- the round trip -------------------------------------------------------------------


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def sign_in_button(html: str) -> str:
    """The href of the middleware's "Sign In with Small Transfers" button."""
    found = re.search(r'<a class="st-button" id="st-sign-in" href="([^"]*)"', html)
    assert found, f"no sign-in button in {html[:300]!r}"
    return unescape(found.group(1))


def sign_in_link(html: str) -> str:
    """The href of the example's own "Sign in" link."""
    found = re.search(r'<a href="([^"]*)">Sign in</a>', html)
    assert found, f"no sign-in link in {html!r}"
    return unescape(found.group(1))


def sign_out_action(html: str) -> str:
    """The action of the example's sign-out form (a POST)."""
    found = re.search(r'<form method="post" action="([^"]*)"', html)
    assert found, f"no sign-out form in {html!r}"
    return unescape(found.group(1))


def new_customer(emu: Emulator, limit_micros: int = 1_000_000) -> Customer:
    tag = os.urandom(3).hex()
    return kit.new_customer(
        emu,
        limit_micros=limit_micros,
        first_name="Ada",
        last_name=f"Lovelace {tag}",
        email=f"ada-{tag}@example.com",
    )


def charges(emu: Emulator, customer: Customer) -> list[tuple[str, str, int]]:
    return [(row.kind, row.state, row.captured_micros) for row in kit.ledger(emu, customer)]


def press(emu: Emulator, authorize_url: str, decision: str, **fields: str) -> httpx.Response:
    """Open the emulator's authorize page as a browser would and press ``decision``.

    The page's form carries a token bound to this browser (CSRF): the post must
    come from the page, with its hidden fields and cookie.
    """
    assert authorize_url.startswith(f"{emu.url}/customer/authorize?"), authorize_url
    with httpx.Client(timeout=5, follow_redirects=False) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        form = {**hidden_fields(page.text), "decision": decision, **fields}
        return browser.post(f"{emu.url}/customer/authorize", data=form)


def allow(emu: Emulator, authorize_url: str, customer: Customer) -> str:
    """Press *Allow* on the emulator's authorize page as ``customer``; the callback URL."""
    answer = press(emu, authorize_url, "allow", customer_id=customer.id)
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def sign_in(visitor: Visitor, emu: Emulator, customer: Customer, paid_path: str) -> None:
    """From a priced page to the same page, signed in: button, Allow, callback."""
    prefix = visitor.prefix
    locked = visitor.get(prefix + paid_path)
    assert locked.status == 401
    assert BUTTON in locked.text
    button = sign_in_button(locked.text)
    assert urlsplit(button).path == prefix + SIGN_IN
    assert query(button)["next"] == prefix + paid_path
    assert f'<a href="{prefix}/">Back to the home page</a>' in locked.text

    start = visitor.get(button)
    assert start.status in (302, 303)
    assert start.location is not None
    assert query(start.location)["redirect_uri"] == visitor.origin + prefix + CALLBACK

    callback = urlsplit(allow(emu, start.location, customer))
    assert f"{callback.scheme}://{callback.netloc}" == visitor.origin
    assert callback.path == prefix + CALLBACK
    back = visitor.get(f"{callback.path}?{callback.query}")
    assert back.status == 303, back.text
    assert back.location == prefix + paid_path


def visitor_pays_once_sees_their_name_and_signs_out(
    visitor: Visitor, emu: Emulator, paid_path: str = "/paid"
) -> None:
    """The whole visit: sign in from the priced page, pay once, free home page, sign out."""
    prefix = visitor.prefix
    customer = new_customer(emu)
    sign_in(visitor, emu, customer, paid_path)

    article = visitor.get(prefix + paid_path)
    assert article.status == 200, article.text
    assert "Premium article" in article.text
    assert f"This visit cost {PRICE} micros." in article.text
    assert charges(emu, customer) == [("transaction", "captured", PRICE)]

    home = visitor.get(prefix + "/")
    assert home.status == 200
    assert f"Signed in as Ada {customer.last_name} ({customer.email})." in home.text
    assert charges(emu, customer) == [("transaction", "captured", PRICE)], "the free page charged"

    sign_out = sign_out_action(home.text)
    assert sign_out == prefix + SIGN_OUT
    bye = visitor.post(sign_out)
    assert bye.status in (302, 303)
    assert bye.location == prefix + "/"
    home = visitor.get(prefix + "/")
    assert "Not signed in." in home.text
    link = sign_in_link(home.text)
    assert urlsplit(link).path == prefix + SIGN_IN
    assert query(link)["next"] == prefix + "/"
    assert visitor.get(prefix + paid_path).status == 401
    assert charges(emu, customer) == [("transaction", "captured", PRICE)]


def visitor_who_denies_returns_to_the_page_signed_out(
    visitor: Visitor, emu: Emulator, paid_path: str = "/paid"
) -> None:
    """*Deny* on the emulator's page: back on the priced page, no session, no error page."""
    prefix = visitor.prefix
    start = visitor.get(sign_in_button(visitor.get(prefix + paid_path).text))
    assert start.location is not None
    denied = press(emu, start.location, "deny")
    assert denied.status_code == 303, denied.text
    callback = urlsplit(denied.headers["location"])
    assert callback.path == prefix + CALLBACK
    assert query(denied.headers["location"])["error"] == "access_denied"

    back = visitor.get(f"{callback.path}?{callback.query}")
    assert back.status == 303, back.text
    assert back.location == prefix + paid_path
    again = visitor.get(prefix + paid_path)
    assert again.status == 401
    assert BUTTON in again.text
    assert "Not signed in." in visitor.get(prefix + "/").text


# -- real servers ---------------------------------------------------------------------

_LISTENING = re.compile(
    rb"(?:Uvicorn running on|Serving on|Listening at:) http://127\.0\.0\.1:(\d+)"
)


@dataclass(frozen=True)
class Server:
    """A server running an example on 127.0.0.1; ``prefix`` is where the app is mounted."""

    port: int
    prefix: str
    #: True when a proxy must strip the prefix before the server (uvicorn --root-path).
    behind_stripping_proxy: bool = False

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextmanager
    def visitor(self) -> Iterator[HttpxVisitor]:
        transport: httpx.BaseTransport = httpx.HTTPTransport()
        if self.behind_stripping_proxy:
            transport = StripPrefix(self.prefix, transport)
        with httpx.Client(base_url=self.origin, transport=transport, timeout=30) as client:
            yield HttpxVisitor(client, self.origin, self.prefix)


class StripPrefix(httpx.BaseTransport):
    """What a reverse proxy in front of ``uvicorn --root-path /app`` does: drop ``/app``."""

    def __init__(self, prefix: str, inner: httpx.BaseTransport) -> None:
        self.prefix, self.inner = prefix, inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == self.prefix or path.startswith(self.prefix + "/"):
            request.url = request.url.copy_with(path=path[len(self.prefix) :] or "/")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def documented_commands(example: str) -> list[str]:
    """The run commands in an example's module docstring (one line each)."""
    tree = ast.parse((ROOT / example).read_text())
    doc = ast.get_docstring(tree) or ""
    return [line.strip() for line in doc.splitlines() if ".venv/bin/" in line and "=" in line]


def documented_launch(example: str, prefix: str = "", which: int = 0) -> Launch:
    """The server command documented in ``example``, on port 0, mounted at ``prefix``.

    The documented environment must point at the emulator with its test keys;
    the tests then swap in their own emulator's URL and a fixed session secret.
    """
    line = documented_commands(example)[which]
    for variable in _DOCUMENTED_ENV:
        assert variable in line, f"{example}: the command does not set {variable}"
    words = shlex.split(line[line.rindex(" .venv/bin/") + 1 :])
    program = Path(words[0]).name
    words = [word.replace("8000", "0") for word in words]  # the port: let the server pick
    command, env = [str(BIN / program), *words[1:]], {}
    if program == "uvicorn" and prefix:
        command += ["--root-path", prefix]  # behind a proxy that strips the prefix
    elif program == "waitress-serve" and prefix:
        command.insert(1, f"--url-prefix={prefix}")  # waitress sets SCRIPT_NAME itself
    elif program == "gunicorn":
        from gunicorn.config import KNOWN_SETTINGS

        if any("--no-control-socket" in (setting.cli or []) for setting in KNOWN_SETTINGS):
            command.insert(1, "--no-control-socket")  # else it opens ~/.gunicorn/gunicorn.ctl
        if prefix:
            env["SCRIPT_NAME"] = prefix  # gunicorn strips it from PATH_INFO
    else:
        assert program in ("uvicorn", "waitress-serve"), f"{example}: unknown server {program}"
    return Launch(command, env, prefix)


_DOCUMENTED_ENV = (
    "SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 ",
    "SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator ",
    "SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator ",
    "SMALL_TRANSFERS_SESSION_SECRET=$(",
)


@dataclass(frozen=True)
class Launch:
    command: list[str]
    env: dict[str, str]
    prefix: str


@contextmanager
def serve(launch: Launch, emu: Emulator, log: Path) -> Iterator[Server]:
    """Run ``launch`` from the repository root, pointed at ``emu``; always stop it.

    The port is 0 and read back from the server's own "listening on" line, so
    there is no race for a free port.
    """
    command, prefix = launch.command, launch.prefix
    env = {**os.environ, **example_env(emu), **launch.env, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            port = _wait_for_port(process, log)
            stripping = bool(prefix) and Path(command[0]).name == "uvicorn"
            yield Server(port, prefix, behind_stripping_proxy=stripping)
        finally:
            _stop(process)


def _wait_for_port(process: subprocess.Popen[Any], log: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _LISTENING.search(log.read_bytes())
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"server did not start: {log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            pass
    # Gone already, or stuck: make sure no worker of its session outlives the test.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# -- the tests every example gets ---------------------------------------------------------


class ExampleTests:
    """The tests every example gets; a test module subclasses it as ``Test…``.

    - in process: the whole visit through ``in_process`` (a framework's own test
      client, or webtest / httpx's ASGI transport) over the entry point;
    - under the server the example's docstring documents, at the root and
      mounted at ``/app``: the whole visit, and a visitor who denies.
    """

    #: The file whose docstring documents the command that serves the example.
    example: ClassVar[str]
    #: The entry point to import (default: ``example`` itself) and its app attribute.
    module: ClassVar[str | None] = None
    app: ClassVar[str] = "app"
    #: Which of the documented commands runs the entry point under a real server.
    which: ClassVar[int] = 0
    paid_path: ClassVar[str] = "/paid"
    #: A visitor over the app, in process, its resources released on exit.
    in_process: Callable[[Any], AbstractContextManager[Visitor]]

    def test_a_visitor_signs_in_pays_once_for_the_article_and_sees_their_name(
        self, load_example: Callable[[str], ModuleType], emu: Emulator
    ) -> None:
        module = self.module or self.example.removesuffix(".py").replace("/", ".")
        with self.in_process(getattr(load_example(module), self.app)) as visitor:
            visitor_pays_once_sees_their_name_and_signs_out(visitor, emu, self.paid_path)

    @pytest.fixture(scope="class", params=["", "/app"], ids=["at-root", "mounted-at-app"])
    @classmethod
    def server(
        cls,
        request: pytest.FixtureRequest,
        emu: Emulator,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[Server]:
        """The documented command, on port 0, at / or at /app (uvicorn: behind a proxy)."""
        launch = documented_launch(cls.example, request.param, cls.which)
        log = tmp_path_factory.mktemp(Path(launch.command[0]).name) / "server.log"
        with serve(launch, emu, log) as running:
            yield running

    def test_under_its_server_the_round_trip_keeps_the_mount_prefix_and_charges_once(
        self, server: Server, emu: Emulator
    ) -> None:
        with server.visitor() as visitor:
            visitor_pays_once_sees_their_name_and_signs_out(visitor, emu, self.paid_path)

    def test_under_its_server_a_visitor_who_denies_comes_back_to_the_page_signed_out(
        self, server: Server, emu: Emulator
    ) -> None:
        with server.visitor() as visitor:
            visitor_who_denies_returns_to_the_page_signed_out(visitor, emu, self.paid_path)
