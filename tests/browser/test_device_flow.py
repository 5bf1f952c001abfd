"""A program pays after its customer approves it in a real headless Chromium.

The program is ``SmallTransfersAuth`` on its own thread (or the
``examples/agent_client.py`` CLI in its own process), talking to a wrapped
app served by a threaded WSGI server on 127.0.0.1; the customer opens the
URL it shows, confirms the code, signs in on the emulator's page, and
presses Allow or Deny on the middleware's page. Every priced request of the
program is charged exactly once (the emulator's ledger). Skipped without
Chromium, unless ``ST_REQUIRE_BROWSER=1`` (CI), as tests/browser/test_browser_flow.py.
Screenshots go to ``artifacts/browser/device-*.png``.
"""

from __future__ import annotations

import json
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from browser_support import ROOT, require_browser

from st_middleware import SmallTransfersWSGI
from st_middleware.client import (
    AccessDenied,
    DeviceAuthorization,
    DeviceCodeExpired,
    SmallTransfersAuth,
)
from st_middleware.emulator import Customer, Emulator
from st_middleware.testing import TEST_SESSION_SECRET, charges, emulator_options

SHOTS = ROOT / "artifacts" / "browser"
SHOTS.mkdir(parents=True, exist_ok=True)
PRICE = 2000


require_browser()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

# -- the app, its server, the browser ----------------------------------------------------


def report_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A paid JSON API: who paid, and how much."""
    customer, charge = environ["smalltransfers.customer"], environ["smalltransfers.charge"]
    body = {"for": customer.id if customer else None, "paid": charge.amount_micros if charge else 0}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` on a threaded WSGI server on 127.0.0.1 (a free port); its URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        app.close()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(port=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def app_url(emu: Emulator) -> Iterator[str]:
    mw = SmallTransfersWSGI(
        report_app, **emulator_options(emu, pricing={"/api/*": PRICE}, device_interval=1)
    )
    with serve(mw) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies): the customer is not signed in anywhere."""
    context = browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-US")
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"device-{name}.png"), full_page=True)


# -- the program ---------------------------------------------------------------------------


class Program(threading.Thread):
    """The customer's program: GETs ``paths`` through ``SmallTransfersAuth``, on its own thread.

    What the auth shows the customer arrives in ``shown``.
    """

    def __init__(self, url: str, paths: list[str], **options: Any) -> None:
        super().__init__(daemon=True)
        self.shown: queue.Queue[DeviceAuthorization] = queue.Queue()
        self.auth = SmallTransfersAuth(on_code=self.shown.put, timeout=60, **options)
        self.url, self.paths = url, paths
        self.answers: list[httpx.Response] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, auth=self.auth) as client:
                self.answers.extend(client.get(path) for path in self.paths)
        except BaseException as error:
            self.error = error

    def device(self) -> DeviceAuthorization:
        return self.shown.get(timeout=20)

    def finish(self) -> list[httpx.Response]:
        self.join(timeout=60)
        assert not self.is_alive()
        return self.answers


def confirm_and_sign_in(page: Page, url: str, code: str, emu: Emulator, who: Customer) -> None:
    """The customer opens the program's link, checks the code, signs in on Small Transfers."""
    answer = page.goto(url)
    assert answer is not None
    assert answer.status == 200
    expect(page.locator("#st-device-code")).to_have_value(code)
    page.click("#st-continue")
    page.wait_for_url(f"{emu.url}/customer/authorize?**")
    page.check(f'input[name="customer_id"][value="{who.id}"]')
    page.click("#allow")
    expect(page.locator("#st-allow")).to_be_visible()


# -- the flows ---------------------------------------------------------------------------------


def test_a_program_pays_for_each_request_after_the_customer_allows_it(
    page: Page, app_url: str, emu: Emulator, tmp_path: Path
) -> None:
    ada = emu.create_customer("Ada", "Lovelace", "ada-device@example.com", limit_micros=1_000_000)
    token_file = tmp_path / "tokens.json"
    program = Program(
        app_url, ["/api/report", "/api/report"], client_name="Report bot", token_file=token_file
    )

    device = program.device()
    assert re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", device.user_code)
    assert device.site == f"{app_url}/"
    page.goto(device.verification_uri_complete)
    expect(page.locator("#st-device-code")).to_have_value(device.user_code)
    shot(page, "01-code-to-confirm")
    page.click("#st-continue")
    page.wait_for_url(f"{emu.url}/customer/authorize?**")
    page.check(f'input[name="customer_id"][value="{ada.id}"]')
    shot(page, "02-small-transfers-sign-in")
    page.click("#allow")
    expect(page.locator("#st-allow")).to_be_visible()
    expect(page.get_by_text("Report bot asks to be charged")).to_be_visible()
    shot(page, "03-allow-the-program")
    page.click("#st-allow")
    expect(page.locator("#st-device-done")).to_contain_text("Report bot can now pay")
    shot(page, "04-program-allowed")

    answers = program.finish()
    assert program.error is None
    assert [answer.json() for answer in answers] == [{"for": ada.id, "paid": PRICE}] * 2
    assert charges(emu, ada) == [PRICE, PRICE]  # the 401 before the approval charged nothing
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    # Signed out from the program: the token it held is refused from then on.
    token = answers[-1].request.headers["authorization"]
    with httpx.Client(base_url=app_url) as client:
        assert program.auth.sign_out(client, "/smalltransfers/sign-out").status_code == 204
        refused = client.get("/api/report", headers={"Authorization": token})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert charges(emu, ada) == [PRICE, PRICE]


def test_a_program_the_customer_denies_stops_without_paying(
    page: Page, app_url: str, emu: Emulator
) -> None:
    bob = emu.create_customer("Bob", "Byte", "bob-device@example.com", limit_micros=1_000_000)
    program = Program(app_url, ["/api/report"], client_name="Unwanted bot", remember=False)

    device = program.device()
    confirm_and_sign_in(page, device.verification_uri_complete, device.user_code, emu, bob)
    page.click("#st-deny")
    expect(page.locator("#st-device-done")).to_contain_text("Nothing was allowed")
    shot(page, "05-program-denied")

    assert program.finish() == []
    assert isinstance(program.error, AccessDenied)
    assert program.error.error == "access_denied"
    assert charges(emu, bob) == []


def test_a_code_nobody_approves_in_time_lapses_on_both_sides(page: Page, emu: Emulator) -> None:
    """``device_expires_in=3``: the program gives up within 3 s, then the page refuses the code."""
    lapsing = SmallTransfersWSGI(
        report_app,
        **emulator_options(emu, pricing={"/api/*": PRICE}, device_interval=1, device_expires_in=3),
    )
    with serve(lapsing) as url:
        program = Program(url, ["/api/report"], remember=False)
        device = program.device()
        shown_at = time.monotonic()
        assert device.expires_in == 3
        program.finish()  # no poll past the code's life: it stops at the last one before
        assert isinstance(program.error, DeviceCodeExpired)
        assert program.error.error == "expired_token"

        # The customer comes back too late.
        time.sleep(max(0.0, shown_at + device.expires_in + 0.2 - time.monotonic()))
        page.goto(device.verification_uri_complete)
        with page.expect_response(lambda answer: answer.request.method == "POST") as refused:
            page.click("#st-continue")
        assert refused.value.status == 400
        expect(page.get_by_role("heading", name="That code was not found")).to_be_visible()
        shot(page, "06-lapsed-code")


# -- the example CLI against the demo shop ---------------------------------------------------


def run_client(shop_url: str, token_file: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "examples.agent_client", "--shop", shop_url]
    return subprocess.Popen(
        [*command, "--token-file", str(token_file), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line(stream: Any, matches: Callable[[str], bool], timeout: float = 30) -> str:
    """The first line of ``stream`` that ``matches``, read on a thread so a hang fails the test."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            if matches(line):
                found.put(line)
                return
        found.put("")

    threading.Thread(target=read, daemon=True).start()
    return found.get(timeout=timeout)


def test_the_agent_client_example_buys_quotes_from_the_demo_shop(
    page: Page, emu: Emulator, tmp_path: Path
) -> None:
    from examples.demo.app import make_app

    cleo = emu.create_customer("Cleo", "Agent", "cleo-device@example.com", limit_micros=1_000_000)
    demo = make_app(
        emulator_url=emu.url,
        publishable_key=emu.publishable_key,
        secret_key=emu.secret_key,
        session_secret=TEST_SESSION_SECRET,
    )
    token_file = tmp_path / "tokens.json"
    with serve(demo) as shop_url:
        first = run_client(shop_url, token_file, "--count", "2")
        try:
            prompt = first_line(first.stderr, lambda line: line.startswith("Open "))
            found = re.match(r"Open (\S+) and enter ([A-Z]{4}-[A-Z]{4}) ", prompt)
            assert found, prompt
            confirm_and_sign_in(page, found.group(1), found.group(2), emu, cleo)
            expect(page.get_by_text("the agent_client example asks to be charged")).to_be_visible()
            page.click("#st-allow")
            expect(page.locator("#st-device-done")).to_be_visible()
            shot(page, "07-agent-client-allowed")
            out, err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == 0, err
        assert out.count("(paid 500 micros)") == 2

        # The next run uses the kept token: no approval, one more quote, charged once.
        again = run_client(shop_url, token_file, "--count", "1")
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert "Open " not in err
        assert out.count("(paid 500 micros)") == 1

        signed_out = run_client(shop_url, token_file, "--sign-out")
        out, err = signed_out.communicate(timeout=60)
        assert signed_out.returncode == 0, err
        assert "Signed out" in out
        assert json.loads(token_file.read_text())["sites"] == {}
    assert charges(emu, cleo) == [500, 500, 500]
