"""The emulator's forms in a real Chromium: its own pages work, another site's form does not.

What a browser sends with a form post (Origin, Referer, which cookies) depends on the
page's Referrer-Policy and the cookies' SameSite, which plain HTTP clients do not model.
Skipped without Debian's /usr/bin/chromium and Playwright (``bash scripts/install-browser``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from st_middleware.emulator import Emulator

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

CALLBACK = "http://127.0.0.1:9/smalltransfers/callback"  # never reached: routed below
ATTACKER = "http://attacker.test/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"], headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def test_allow_then_revoke_on_the_emulators_pages(page: Any) -> None:
    with Emulator(port=0) as emu:
        ada = emu.create_customer("Ada", "Lovelace", "ada@example.com")
        # The merchant's callback, answered by the browser itself: it only has to exist.
        page.route(CALLBACK + "*", lambda route: route.fulfill(body="back at the merchant"))
        query = urlencode(
            {
                "publishable_key": emu.publishable_key,
                "redirect_uri": CALLBACK,
                "response_type": "code",
            }
        )
        page.goto(f"{emu.url}/customer/authorize?{query}")
        page.check(f'input[name="customer_id"][value="{ada.id}"]')
        page.click("#allow")
        page.wait_for_url(CALLBACK + "?code=*")

        emu.issue_token(ada.id)
        page.goto(f"{emu.url}/customer/dashboard?customer_id={ada.id}")
        with page.expect_response(f"{emu.url}/customer/revoke") as revoked:
            page.click(f"#revoke-{emu.publishable_key}")
        assert revoked.value.status == 303
        assert page.locator(f"#revoke-{emu.publishable_key}").count() == 0
        assert [g.active_tokens for g in emu.store.grants(ada.id)] == [0]


def test_another_sites_form_cannot_revoke(page: Any) -> None:
    with Emulator(port=0) as emu:
        ada = emu.create_customer("Ada", "Lovelace", "ada@example.com")
        emu.issue_token(ada.id)
        # The customer has the dashboard open (so the browser holds the form cookie) ...
        page.goto(f"{emu.url}/customer/dashboard?customer_id={ada.id}")
        token = page.locator(
            'form[action="/customer/revoke"] input[name="csrf_token"]'
        ).get_attribute("value")
        # ... then visits a page that posts the Revoke form, even with a token it somehow got.
        attack = (
            f'<form method="post" action="{emu.url}/customer/revoke">'
            f'<input name="customer_id" value="{ada.id}">'
            f'<input name="merchant" value="{emu.publishable_key}">'
            f'<input name="csrf_token" value="{token}"><button id="go">Win a prize</button></form>'
        )
        page.route(ATTACKER, lambda route: route.fulfill(body=attack, content_type="text/html"))
        page.goto(ATTACKER)
        with page.expect_response(f"{emu.url}/customer/revoke") as answer:
            page.click("#go")
        assert answer.value.status == 403
        assert [g.active_tokens for g in emu.store.grants(ada.id)] == [1]
