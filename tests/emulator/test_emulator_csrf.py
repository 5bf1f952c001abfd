"""The HTML forms (Allow/Deny, Revoke) accept only posts from the emulator's own pages.

Each form carries a token bound to a cookie of the browser that loaded the page; a post
without it, with another browser's, or from another origin is refused with 403.
"""

from __future__ import annotations

import httpx
import pytest
from emulator_support import REDIRECT_URI, authorize_form, hidden_fields

from st_middleware.emulator import Customer, Emulator

FOREIGN = "http://evil.example"


def dashboard_form(client: httpx.Client, customer: Customer) -> dict[str, str]:
    page = client.get("/customer/dashboard", params={"customer_id": customer.id})
    assert page.status_code == 200
    return hidden_fields(page.text, "/customer/revoke")


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert '<code id="error-code">forbidden</code>' in response.text
    assert "reload the page" in response.text  # tells the person what to do


def pays(client: httpx.Client, keys: dict[str, str]) -> bool:
    return client.post("/api/v1/transactions", json={**keys, "amountMicros": 1}).status_code == 201


def test_revoke_without_the_pages_token_is_refused(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    # What a cross-site form could post: the customer and merchant ids are no secret.
    forged = {"customer_id": customer.id, "merchant": emu.publishable_key}
    assert_refused(client.post("/customer/revoke", data=forged))
    form = dashboard_form(client, customer)
    assert_refused(client.post("/customer/revoke", data={**form, "csrf_token": "x" * 64}))
    assert pays(client, keys)  # the grant survived


def test_a_token_is_bound_to_the_browser_and_the_form_it_came_in(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    form = dashboard_form(client, customer)
    # An attacker's own token (from their own page load) in the victim's browser.
    with httpx.Client(base_url=emu.url) as attacker:
        stolen = dashboard_form(attacker, customer)["csrf_token"]
    assert stolen != form["csrf_token"]
    assert_refused(client.post("/customer/revoke", data={**form, "csrf_token": stolen}))
    # The sign-in form's token does not work for Revoke.
    other = authorize_form(client, emu)["csrf_token"]
    assert_refused(client.post("/customer/revoke", data={**form, "csrf_token": other}))
    # A browser that lost the cookie.
    client.cookies.clear()
    assert_refused(client.post("/customer/revoke", data=form))
    assert pays(client, keys)


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_allow_and_deny_without_the_pages_token_are_refused(
    client: httpx.Client, emu: Emulator, customer: Customer, decision: str
) -> None:
    forged = {
        "publishable_key": emu.publishable_key,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "customer_id": customer.id,
        "decision": decision,
    }
    response = client.post("/customer/authorize", data=forged)
    assert_refused(response)
    assert "set-cookie" not in response.headers  # no customer was signed in
    form = authorize_form(client, emu)
    wrong = {**form, "customer_id": customer.id, "decision": decision, "csrf_token": "nope"}
    assert_refused(client.post("/customer/authorize", data=wrong))


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": FOREIGN},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},
        {"Referer": FOREIGN + "/page"},
        {"Referer": "not a url"},
    ],
)
def test_a_foreign_origin_or_referer_is_refused_even_with_the_token(
    client: httpx.Client, emu: Emulator, customer: Customer, headers: dict[str, str]
) -> None:
    form = {**authorize_form(client, emu), "customer_id": customer.id, "decision": "allow"}
    assert_refused(client.post("/customer/authorize", data=form, headers=headers))


def test_the_emulators_own_origin_and_referer_pass(
    client: httpx.Client, emu: Emulator, customer: Customer
) -> None:
    form = {**authorize_form(client, emu), "customer_id": customer.id, "decision": "allow"}
    referer = emu.url + "/customer/authorize?publishable_key=x"
    for headers in ({"Origin": emu.url}, {"Referer": referer}, {}):
        response = client.post("/customer/authorize", data=form, headers=headers)
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith(REDIRECT_URI + "?code=")


def test_the_form_cookie_is_strict_http_only_and_set_once(
    client: httpx.Client, emu: Emulator
) -> None:
    assert "set-cookie" not in client.get("/").headers  # a page without a form sets none
    query = {
        "publishable_key": emu.publishable_key,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
    }
    page = client.get("/customer/authorize", params=query)
    attributes = {part.strip().lower() for part in page.headers["set-cookie"].split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    token = hidden_fields(page.text, "/customer/authorize")["csrf_token"]
    # Kept, not replaced: pages opened earlier (other tabs, other emulators) stay valid.
    again = client.get("/customer/authorize", params=query)
    assert "set-cookie" not in again.headers
    assert hidden_fields(again.text, "/customer/authorize")["csrf_token"] == token
