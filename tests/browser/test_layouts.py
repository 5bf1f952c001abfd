"""Every page a visitor meets, in a real headless Chromium at 1280 px and at 390 px wide.

The middleware's own pages (401, 402, 503, 400) through a small wrapped app, the
emulator's sign-in page and dashboard, and the demo shop's pages: at each width
nothing is wider than the window (no sideways scrolling on a phone), and each
page has a viewport meta and an inline icon (so no ``/favicon.ico`` 404s).
The sign-in button is checked against MUI v5's ``<Button variant="contained"
size="large" startIcon={...}>``: the values below are MUI's own, not ours.

Chromium is Debian's ``/usr/bin/chromium`` (``bash scripts/install-browser``),
driven by Playwright, which never downloads a browser here. Without it the
module is skipped, unless ``ST_REQUIRE_BROWSER=1`` (CI), then it fails.
Screenshots of every page at both widths go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from browser_support import ROOT, require_browser
from examples.demo.app import make_app

from st_middleware import Price, SmallTransfersWSGI
from st_middleware.emulator import Emulator
from st_middleware.testing import TEST_SESSION_SECRET, emulator_options, new_customer

SHOTS = ROOT / "artifacts" / "screenshots"
SHOTS.mkdir(parents=True, exist_ok=True)
WIDTHS = (1280, 390)
HEIGHT = 800
BUTTON = "Sign In with Small Transfers"

# MUI v5 defaults for a contained, large, primary button (theme.typography.button,
# the sizeLarge and contained variants, theme.shadows), as written in MUI's source.
MUI_SHADOWS = {
    2: "0px 3px 1px -2px rgba(0,0,0,0.2),0px 2px 2px 0px rgba(0,0,0,0.14),"
    "0px 1px 5px 0px rgba(0,0,0,0.12)",
    4: "0px 2px 4px -1px rgba(0,0,0,0.2),0px 4px 5px 0px rgba(0,0,0,0.14),"
    "0px 1px 10px 0px rgba(0,0,0,0.12)",
    6: "0px 3px 5px -1px rgba(0,0,0,0.2),0px 6px 10px 0px rgba(0,0,0,0.14),"
    "0px 1px 18px 0px rgba(0,0,0,0.12)",
    8: "0px 5px 5px -3px rgba(0,0,0,0.2),0px 8px 10px 1px rgba(0,0,0,0.14),"
    "0px 3px 14px 2px rgba(0,0,0,0.12)",
}
MUI_BUTTON = {
    "text-transform": "uppercase",
    "font-weight": "500",
    "font-size": "15px",  # 0.9375rem
    "line-height": "26.25px",  # 1.75
    "padding": "8px 22px",
    "border-radius": "4px",
    "background-color": "rgb(25, 118, 210)",  # primary.main #1976d2
    "color": "rgb(255, 255, 255)",
    "min-width": "64px",
}
MUI_LETTER_SPACING = 0.02857 * 15  # 0.02857em
MUI_HOVER_BACKGROUND = "rgb(21, 101, 192)"  # primary.dark #1565c0


require_browser()

from playwright.sync_api import (  # noqa: E402
    Browser,
    BrowserContext,
    Page,
    expect,
)

# -- servers: the emulator, a small wrapped app, the demo shop -------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(app: Callable[..., Iterable[bytes]]) -> Iterator[str]:
    """``app`` on 127.0.0.1 (a free port) for as long as the generator runs."""
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _paid_page(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<!doctype html><title>Paid</title><h1>Paid page</h1>"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(port=0, merchant_name="Layout Shop") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def shop_url(emu: Emulator) -> Iterator[str]:
    """A bare app under the middleware: a flat price and a per-use one."""
    pricing = {"/paid": 3000, "/essay": Price(7200, mode="authorize-capture")}
    app = SmallTransfersWSGI(_paid_page, **emulator_options(emu), pricing=pricing)
    try:
        yield from _serve(app)
    finally:
        app.close()


@pytest.fixture(scope="module")
def demo_url(emu: Emulator) -> Iterator[str]:
    app = make_app(
        emulator_url=emu.url,
        publishable_key=emu.publishable_key,
        secret_key=emu.secret_key,
        session_secret=TEST_SESSION_SECRET,
    )
    try:
        yield from _serve(app)
    finally:
        app.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies) for each visitor."""
    context: BrowserContext = browser.new_context(
        viewport={"width": WIDTHS[0], "height": HEIGHT}, locale="en-US"
    )
    try:
        yield context.new_page()
    finally:
        context.close()


# -- what every page must do -----------------------------------------------------------


def check_layout(page: Page, name: str) -> None:
    """At each width nothing is wider than the window; a viewport meta, an inline icon.

    The page is laid out again at each width, not reloaded: a paid page is not paid twice.
    """
    viewport = page.locator('meta[name="viewport"]')
    assert "width=device-width" in (viewport.get_attribute("content") or ""), name
    icon = page.locator('link[rel~="icon"]')
    assert (icon.get_attribute("href") or "").startswith("data:image/svg+xml"), name
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        scroll, window = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        assert scroll <= window, f"{name} is {scroll} px wide in a {width} px window"
    page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})


def goto(page: Page, url: str, status: int) -> None:
    answer = page.goto(url)
    assert answer is not None
    assert answer.status == status, f"{url}: {answer.status}"


def mui_shadow(page: Page, elevation: int) -> str:
    """MUI's shadow as Chromium computes it (the same value, Chromium's spelling)."""
    return str(
        page.evaluate(
            """shadow => {
                const probe = document.createElement('div');
                probe.style.boxShadow = shadow;
                document.body.append(probe);
                const computed = getComputedStyle(probe).boxShadow;
                probe.remove();
                return computed;
            }""",
            MUI_SHADOWS[elevation],
        )
    )


def assert_mui_button(page: Page, name: str) -> None:
    """The sign-in button at both widths: MUI's values, its icon, one line, its states."""
    button = page.get_by_role("link", name=BUTTON)
    expect(button).to_be_visible()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        for prop, value in MUI_BUTTON.items():
            expect(button, f"{prop} at {width} px").to_have_css(prop, value)
        expect(button).to_have_css("box-shadow", mui_shadow(page, 2))
        style = button.evaluate(
            """el => {
                const css = getComputedStyle(el);
                const icon = el.querySelector('svg').getBoundingClientRect();
                const iconCss = getComputedStyle(el.querySelector('svg'));
                return {
                    family: css.fontFamily,
                    spacing: parseFloat(css.letterSpacing),
                    height: el.getBoundingClientRect().height,
                    width: el.getBoundingClientRect().width,
                    icon: [icon.width, icon.height, iconCss.marginRight, iconCss.marginLeft],
                    text: el.innerText,
                };
            }"""
        )
        assert style["family"].replace('"', "").startswith("Roboto,"), style["family"]
        assert abs(style["spacing"] - MUI_LETTER_SPACING) < 0.01, style["spacing"]
        assert style["icon"] == [22, 22, "8px", "-4px"], style["icon"]
        assert style["text"] == BUTTON.upper()
        # One line of 26.25 px plus 8 px of padding above and below: the label never wraps.
        assert abs(style["height"] - 42.25) < 0.5, f"{name}: wraps at {width} px"
        assert style["width"] <= width
    # The states: hover (primary.dark, shadows[4]), pressed (shadows[8]), keyboard focus
    # (shadows[6]). A press is released off the button, so nothing is followed.
    button.hover()
    expect(button).to_have_css("background-color", MUI_HOVER_BACKGROUND)
    expect(button).to_have_css("box-shadow", mui_shadow(page, 4))
    page.mouse.down()
    expect(button).to_have_css("box-shadow", mui_shadow(page, 8))
    page.mouse.move(0, 0)
    page.mouse.up()
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "st-sign-in":
            break
    expect(button).to_be_focused()
    expect(button).to_have_css("box-shadow", mui_shadow(page, 6))
    page.screenshot(path=str(SHOTS / f"{name}-button-focused.png"))


# -- the middleware's pages ------------------------------------------------------------


def test_the_middlewares_pages_fit_a_phone_and_a_desktop(
    page: Page, emu: Emulator, shop_url: str
) -> None:
    goto(page, f"{shop_url}/paid", 401)
    expect(page.get_by_role("heading", name="Sign in to continue")).to_be_visible()
    expect(page.get_by_text("This page costs 0.003 USD per visit.")).to_be_visible()
    check_layout(page, "middleware-401")

    goto(page, f"{shop_url}/essay", 401)
    check_layout(page, "middleware-401-authorize-capture")

    goto(page, f"{shop_url}/paid%01", 400)  # a control character in the path
    expect(page.get_by_role("heading", name="Bad request")).to_be_visible()
    check_layout(page, "middleware-400")

    # Sign in for real: the button, the emulator's page, Allow as a new customer.
    goto(page, f"{shop_url}/paid", 401)
    page.get_by_role("link", name=BUTTON).click()
    page.wait_for_url(f"{emu.url}/customer/authorize?**")
    page.check('input[name="customer_id"][value="new"]')
    page.fill('input[name="new_first_name"]', "Layout")
    page.fill('input[name="new_last_name"]', "Tester")
    page.fill('input[name="new_email"]', "layout@example.com")
    page.fill('input[name="new_limit_usd"]', "0.005")
    with page.expect_response(f"{shop_url}/paid") as paid:
        page.click("#allow")
    assert paid.value.status == 200
    (tester,) = [c for c in emu.customers() if c.email == "layout@example.com"]

    # 0.003 spent of 0.005: the next visit would go over the limit.
    goto(page, f"{shop_url}/paid", 402)
    expect(page.get_by_role("heading", name="Payment refused")).to_be_visible()
    expect(page.locator(".st-msg")).to_contain_text("spending limit")
    expect(
        page.get_by_role("link", name="Raise your spending limit on Small Transfers")
    ).to_be_visible()
    check_layout(page, "middleware-402-limit")

    emu.update_customer(tester.id, limit_micros=1_000_000)
    emu.set_faults(error="maintenance_mode")
    try:
        goto(page, f"{shop_url}/paid", 503)
    finally:
        emu.clear_faults()
    expect(page.get_by_role("heading", name="Payments are temporarily unavailable")).to_be_visible()
    check_layout(page, "middleware-503")


def test_the_sign_in_button_is_muis_contained_large_button(page: Page, shop_url: str) -> None:
    goto(page, f"{shop_url}/paid", 401)
    assert_mui_button(page, "middleware-401")


# -- the emulator's pages --------------------------------------------------------------


def test_the_emulators_pages_fit_a_phone_and_a_desktop(page: Page, emu: Emulator) -> None:
    ada = emu.create_customer(
        "Ada", "Lovelace-Byron", "ada.lovelace.byron@analytical-engine.example", 10_000
    )
    new_customer(emu)
    params = (
        f"publishable_key={emu.publishable_key}&response_type=code&state=s"
        "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fsmalltransfers%2Fcallback"
    )
    goto(page, f"{emu.url}/customer/authorize?{params}", 200)
    expect(page.get_by_text("Layout Shop asks permission to charge you")).to_be_visible()
    check_layout(page, "emulator-authorize")

    # A dashboard with what makes it wide: two shops, charges with long keys, a revoke.
    token = emu.issue_token(ada.id)
    emu.add_merchant("pk_test_other_shop", "sk_test_other_shop", name="Another Shop")
    other = emu.issue_token(ada.id, publishable_key="pk_test_other_shop")
    for key in ["a" * 64, "idempotency-key-" + "7" * 40, ""]:
        emu.store.charge(
            emu.publishable_key, emu.secret_key, token, 1000, "transaction", key or None
        )
    emu.store.charge("pk_test_other_shop", "sk_test_other_shop", other, 2500, "charge", "k")
    goto(page, f"{emu.url}/customer/dashboard?customer_id={ada.id}", 200)
    expect(page.locator("#spending")).to_have_text("$0.0055 used of $0.01")
    page.click("#revoke-pk_test_other_shop")
    expect(page.locator("#revoke-note")).to_contain_text(
        "A shop learns that you revoked its access at its next charge"
    )
    check_layout(page, "emulator-dashboard")

    # Raising the limit, in a real browser (its Origin and cookies pass the form check).
    page.fill('input[name="limit_usd"]', "abc")
    page.click("#raise-limit")
    expect(page.locator(".error")).to_contain_text("must be an amount in USD")
    check_layout(page, "emulator-dashboard-limit-error")
    page.fill('input[name="limit_usd"]', "2.5")
    page.click("#raise-limit")
    expect(page.locator("#spending")).to_have_text("$0.0055 used of $2.50")

    goto(page, f"{emu.url}/", 200)
    check_layout(page, "emulator-index")
    goto(page, f"{emu.url}/customer/authorize?publishable_key=pk_nobody", 400)
    check_layout(page, "emulator-error")


# -- the demo shop ---------------------------------------------------------------------


def test_the_demo_shops_pages_fit_a_phone_and_a_desktop(
    page: Page, emu: Emulator, demo_url: str
) -> None:
    goto(page, f"{demo_url}/", 200)
    assert page.title() == "Micro Shop"
    check_layout(page, "demo-home-signed-out")
    # The shop's button is the middleware's own component.
    assert_mui_button(page, "demo-home")

    visitor = new_customer(emu, limit_micros=10_000, first_name="Demo")
    page.goto(f"{demo_url}/smalltransfers/sign-in?next=/")
    page.check(f'input[name="customer_id"][value="{visitor.id}"]')
    page.click("#allow")
    page.wait_for_url(f"{demo_url}/")
    expect(page.get_by_text("Signed in as")).to_be_visible()
    check_layout(page, "demo-home-signed-in")

    for _ in range(2):
        goto(page, f"{demo_url}/joke", 200)
    assert page.title() == "A joke · Micro Shop"
    check_layout(page, "demo-joke")
    # Two jokes leave 0.008 USD of 0.01: the essay (at most 0.0072 USD) is served.
    goto(page, f"{demo_url}/essay", 200)
    expect(page.get_by_text("0.0072 USD was authorized up front")).to_be_visible()
    check_layout(page, "demo-essay")

    # The limit really reached: nothing left for the next page.
    emu.update_customer(visitor.id, limit_micros=emu.spent(visitor.id))
    goto(page, f"{demo_url}/fortune", 402)
    expect(page.get_by_role("heading", name="Payment refused")).to_be_visible()
    check_layout(page, "demo-402-limit")

    goto(page, f"{demo_url}/nowhere", 404)
    check_layout(page, "demo-404")
