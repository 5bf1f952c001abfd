"""A real headless Chromium through the FastAPI example, served by uvicorn on loopback.

The visitor opens a paid page, meets the "Sign In with Small Transfers"
button, allows the charge on the emulator's authorize page, reads the paid
page (charged once per visit: a reload is charged again), and signs out; a
visitor who denies comes back signed out without an error page; a customer
whose spending limit is below the price gets the "Payment refused" page.

Chromium is Debian's ``/usr/bin/chromium`` (``bash scripts/install-browser``),
driven by Playwright, which never downloads a browser here. Without it the
module is skipped, unless ``ST_REQUIRE_BROWSER=1`` (CI), then it fails.
Screenshots of every step go to ``artifacts/browser/``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from browser_support import ROOT, require_browser

from st_middleware.emulator import Customer, Emulator

SHOTS = ROOT / "artifacts" / "browser"
SHOTS.mkdir(parents=True, exist_ok=True)
PRICE = 3000
BUTTON = "Sign In with Small Transfers"


require_browser()

from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402

# -- the emulator, the app under uvicorn, the browser ----------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(port=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def app_url(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``examples/fastapi_app.py`` under uvicorn on 127.0.0.1 (a free port), always stopped."""
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    env = {
        **os.environ,
        "SMALL_TRANSFERS_BASE_URL": emu.url,
        "SMALL_TRANSFERS_PUBLISHABLE_KEY": emu.publishable_key,
        "SMALL_TRANSFERS_SECRET_KEY": emu.secret_key,
        "SMALL_TRANSFERS_SESSION_SECRET": "browser-test-session-secret-0123456789abcdef",
        "PYTHONUNBUFFERED": "1",
    }
    uvicorn = Path(sys.executable).parent / "uvicorn"
    command = [str(uvicorn), "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", "0"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield f"http://127.0.0.1:{_port(server, log)}"
        finally:
            _stop(server)


def _port(server: subprocess.Popen[Any], log: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_bytes())
        if found:
            return int(found.group(1))
        if server.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"uvicorn did not start: {log.read_text(errors='replace')[-3000:]}")


def _stop(server: subprocess.Popen[Any]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            server.wait(timeout=20)
    with suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) for each visitor."""
    context = browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-US")
    try:
        yield context
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def charges(emu: Emulator, customer: Customer) -> list[int]:
    return [row.captured_micros for row in emu.ledger(customer.id) if row.state == "captured"]


def open_authorize_page(page: Page, app_url: str, emu: Emulator) -> None:
    """Open the paid page signed out and press the sign-in button: the emulator's page."""
    answer = page.goto(f"{app_url}/paid")
    assert answer is not None
    assert answer.status == 401
    expect(page.get_by_role("heading", name="Sign in to continue")).to_be_visible()
    page.get_by_role("link", name=BUTTON).click()
    page.wait_for_url(f"{emu.url}/customer/authorize?**")
    expect(page.get_by_role("heading", name="Sign in with Small Transfers")).to_be_visible()


def session_cookies(context: BrowserContext) -> list[str]:
    return [cookie["name"] for cookie in context.cookies() if "st_session" in cookie["name"]]


# -- the visits -------------------------------------------------------------------------


def test_a_visitor_signs_in_pays_for_each_visit_and_signs_out(
    context: BrowserContext, app_url: str, emu: Emulator
) -> None:
    ada = emu.create_customer("Ada", "Lovelace", "ada@example.com", limit_micros=1_000_000)
    page = context.new_page()

    answer = page.goto(f"{app_url}/paid")
    assert answer is not None
    assert answer.status == 401
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    expect(page.get_by_text("0.003 USD")).to_be_visible()
    shot(page, "01-paid-page-asks-to-sign-in")

    page.get_by_role("link", name=BUTTON).click()
    page.wait_for_url(f"{emu.url}/customer/authorize?**")
    page.check(f'input[name="customer_id"][value="{ada.id}"]')
    shot(page, "02-emulator-authorize-page")

    with page.expect_response(f"{app_url}/paid") as paid:
        page.click("#allow")
    assert paid.value.status == 200
    expect(page.get_by_role("heading", name="Premium article")).to_be_visible()
    expect(page.get_by_text("Signed in as Ada Lovelace (ada@example.com).")).to_be_visible()
    expect(page.get_by_text(f"This visit cost {PRICE} micros.")).to_be_visible()
    shot(page, "03-paid-article")
    assert charges(emu, ada) == [PRICE]

    again = page.reload()
    assert again is not None
    assert again.status == 200
    expect(page.get_by_role("heading", name="Premium article")).to_be_visible()
    shot(page, "04-paid-article-reloaded")
    assert charges(emu, ada) == [PRICE, PRICE]

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{app_url}/")
    expect(page.get_by_text("Not signed in.")).to_be_visible()
    assert session_cookies(context) == []
    shot(page, "05-signed-out-home")

    answer = page.goto(f"{app_url}/paid")
    assert answer is not None
    assert answer.status == 401
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    shot(page, "06-paid-page-asks-again")
    assert charges(emu, ada) == [PRICE, PRICE]


def test_a_visitor_who_denies_comes_back_signed_out_without_an_error_page(
    context: BrowserContext, app_url: str, emu: Emulator
) -> None:
    page = context.new_page()
    open_authorize_page(page, app_url, emu)

    with page.expect_response(f"{app_url}/paid") as back:
        page.click("#deny")
    # Back where they started: the paid page, still asking to sign in (not an error page).
    assert back.value.status == 401
    assert page.url == f"{app_url}/paid"
    expect(page.get_by_role("heading", name="Sign in to continue")).to_be_visible()
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    assert session_cookies(context) == []
    shot(page, "07-denied-back-on-the-paid-page")


def test_a_customer_over_their_spending_limit_gets_the_payment_refused_page(
    context: BrowserContext, app_url: str, emu: Emulator
) -> None:
    page = context.new_page()
    open_authorize_page(page, app_url, emu)

    # A new customer, created on the emulator's page, who may spend 0.001 USD in all.
    page.check('input[name="customer_id"][value="new"]')
    page.fill('input[name="new_first_name"]', "Tiny")
    page.fill('input[name="new_last_name"]', "Budget")
    page.fill('input[name="new_email"]', "tiny@example.com")
    page.fill('input[name="new_limit_usd"]', "0.001")
    shot(page, "08-emulator-new-customer-with-a-tiny-limit")
    with page.expect_response(f"{app_url}/paid") as refused:
        page.click("#allow")

    assert refused.value.status == 402
    expect(page.get_by_role("heading", name="Payment refused")).to_be_visible()
    expect(page.locator(".st-msg")).to_contain_text("spending limit")
    raise_it = page.get_by_role("link", name="Raise your spending limit on Small Transfers")
    expect(raise_it).to_have_attribute("href", f"{emu.url}/customer/dashboard")
    shot(page, "09-payment-refused")
    (tiny,) = [c for c in emu.customers() if c.email == "tiny@example.com"]
    assert tiny.limit_micros == 1000
    assert charges(emu, tiny) == []

    # Still signed in: the free page greets them.
    page.goto(f"{app_url}/")
    expect(page.get_by_text("Signed in as Tiny Budget (tiny@example.com).")).to_be_visible()
