"""What the emulator's pages tell a person: who asks, what Deny does, limits, revocations.

The sign-in page names the merchant (not its key) and says that Deny charges
nothing; a Deny goes back to the shop as ``error=access_denied`` and is logged
when verbose; the dashboard raises a spending limit through a form only its own
page can post, and says when a shop learns of a revocation. Every page carries
an inline icon, and ``/favicon.ico`` answers too.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from emulator_support import REDIRECT_URI, authorize_form, form_token, hidden_fields

from st_middleware.emulator import Customer, Emulator
from st_middleware.emulator.__main__ import _parser

REVOKE_NOTE = "A shop learns that you revoked its access at its next charge"


def sign_in_page(client: httpx.Client, emu: Emulator, publishable_key: str | None = None) -> str:
    params = {
        "publishable_key": publishable_key or emu.publishable_key,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "state": "xyz",
    }
    response = client.get("/customer/authorize", params=params)
    assert response.status_code == 200, response.text
    return response.text


def dashboard(client: httpx.Client, customer: Customer) -> str:
    response = client.get("/customer/dashboard", params={"customer_id": customer.id})
    assert response.status_code == 200, response.text
    return response.text


def deny(client: httpx.Client, emu: Emulator) -> httpx.Response:
    form = {**authorize_form(client, emu, state="xyz"), "decision": "deny"}
    return client.post("/customer/authorize", data=form)


# -- the merchant's name ---------------------------------------------------------------


def test_the_sign_in_page_names_the_merchant_not_its_key(
    client: httpx.Client, emu: Emulator
) -> None:
    page = sign_in_page(client, emu)
    assert "<b>Test merchant</b> asks permission to charge you" in page
    assert emu.publishable_key not in page.replace(f'value="{emu.publishable_key}"', "")


def test_a_named_emulator_and_merchant_are_shown_by_name() -> None:
    with (
        Emulator(port=0, merchant_name="Micro Shop") as emu,
        httpx.Client(base_url=emu.url) as client,
    ):
        emu.add_merchant("pk_test_bookshop", "sk_test_bookshop", name="Book & Co")
        emu.add_merchant("pk_test_unnamed", "sk_test_unnamed")
        assert "<b>Micro Shop</b> asks permission" in sign_in_page(client, emu)
        assert "<b>Book &amp; Co</b> asks permission" in sign_in_page(
            client, emu, "pk_test_bookshop"
        )
        # Without a name, the key is all there is to show.
        assert "<b>pk_test_unnamed</b> asks permission" in sign_in_page(
            client, emu, "pk_test_unnamed"
        )
        ada = emu.create_customer("Ada", "Lovelace")
        emu.issue_token(ada.id)
        emu.issue_token(ada.id, publishable_key="pk_test_bookshop")
        page = dashboard(client, ada)
        assert "Micro Shop <small><code>pk_test_emulator</code></small>" in page
        assert "Book &amp; Co <small><code>pk_test_bookshop</code></small>" in page
        index = client.get("/").text
        assert '<td data-label="Name"><span>Micro Shop</span></td>' in index


def test_the_cli_takes_a_merchant_name() -> None:
    assert _parser().parse_args([]).merchant_name == "Test merchant"
    assert _parser().parse_args(["--merchant-name", "Micro Shop"]).merchant_name == "Micro Shop"


# -- Deny ------------------------------------------------------------------------------


def test_the_sign_in_page_says_what_deny_does(client: httpx.Client, emu: Emulator) -> None:
    page = sign_in_page(client, emu)
    assert "Deny takes you back to Test merchant without signing you in" in page
    assert "nothing is charged" in page


def test_deny_sends_access_denied_to_the_shop_and_is_logged_when_verbose(
    client: httpx.Client, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.verbose = True
    response = deny(client, emu)
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query == {"error": ["access_denied"], "state": ["xyz"]}
    logged = capsys.readouterr().err
    assert (
        "emulator: sign-in denied for Test merchant (pk_test_emulator): "
        "error=access_denied, nothing charged"
    ) in logged
    assert emu.ledger() == []


def test_deny_is_not_logged_when_quiet(
    client: httpx.Client, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deny(client, emu).status_code == 303
    assert capsys.readouterr().err == ""


def test_allow_is_logged_when_verbose(
    client: httpx.Client, emu: Emulator, customer: Customer, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.verbose = True
    form = {**authorize_form(client, emu), "customer_id": customer.id, "decision": "allow"}
    assert client.post("/customer/authorize", data=form).status_code == 303
    assert f"sign-in allowed for Test merchant (pk_test_emulator) by customer {customer.id}" in (
        capsys.readouterr().err
    )


# -- raising the spending limit --------------------------------------------------------


def test_the_dashboard_raises_the_spending_limit(
    client: httpx.Client, emu: Emulator, customer: Customer, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.update_customer(customer.id, limit_micros=10_000)
    page = dashboard(client, customer)
    assert "$0.00 used of $0.01" in page
    assert 'name="limit_usd" value="0.01"' in page
    form = hidden_fields(page, "/customer/limit")
    assert form["customer_id"] == customer.id
    emu.verbose = True
    response = client.post("/customer/limit", data={**form, "limit_usd": "2.50"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/customer/dashboard?customer_id={customer.id}"
    assert emu.store.customer(customer.id).limit_micros == 2_500_000  # type: ignore[union-attr]
    assert "$0.00 used of $2.50" in client.get(response.headers["location"]).text
    assert f"spending limit of customer {customer.id} set to $2.50" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("lots", "The spending limit must be an amount in USD."),
        ("-1", "The spending limit must be a positive amount with at most 6 decimals."),
        ("0.0000001", "at most 6 decimals"),
    ],
)
def test_a_bad_limit_is_shown_on_the_dashboard_and_changes_nothing(
    client: httpx.Client, emu: Emulator, customer: Customer, typed: str, said: str
) -> None:
    form = hidden_fields(dashboard(client, customer), "/customer/limit")
    response = client.post("/customer/limit", data={**form, "limit_usd": typed})
    assert response.status_code == 400
    assert said in response.text
    assert f'name="limit_usd" value="{typed}"' in response.text  # what they typed, to fix
    assert emu.store.customer(customer.id).limit_micros == 1_000_000  # type: ignore[union-attr]


def test_the_limit_form_needs_the_pages_token(
    client: httpx.Client, emu: Emulator, customer: Customer
) -> None:
    forged = {"customer_id": customer.id, "limit_usd": "1000"}
    response = client.post("/customer/limit", data=forged)
    assert response.status_code == 403
    assert '<code id="error-code">forbidden</code>' in response.text
    form = hidden_fields(dashboard(client, customer), "/customer/limit")
    # A made-up token, and another form's (the sign-in page's, the Revoke form's).
    tokens = ["x" * 64, form_token(client, emu)["csrf_token"]]
    emu.issue_token(customer.id)
    tokens.append(hidden_fields(dashboard(client, customer), "/customer/revoke")["csrf_token"])
    for token in tokens:
        response = client.post("/customer/limit", data={**forged, "csrf_token": token})
        assert response.status_code == 403
    foreign = {"Origin": "http://evil.example"}
    response = client.post("/customer/limit", data={**form, "limit_usd": "1000"}, headers=foreign)
    assert response.status_code == 403
    assert emu.store.customer(customer.id).limit_micros == 1_000_000  # type: ignore[union-attr]


# -- revoking --------------------------------------------------------------------------


def test_after_revoke_the_dashboard_says_when_the_shop_learns_of_it(
    client: httpx.Client, emu: Emulator, customer: Customer, token: str
) -> None:
    page = dashboard(client, customer)
    assert REVOKE_NOTE not in page
    response = client.post("/customer/revoke", data=hidden_fields(page, "/customer/revoke"))
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert REVOKE_NOTE in page
    assert "until then it may still show you as signed in, but it can no longer charge you" in (
        page
    )


# -- icons -----------------------------------------------------------------------------


def test_every_page_has_an_inline_icon_and_favicon_ico_answers(
    client: httpx.Client, emu: Emulator, customer: Customer
) -> None:
    pages = [
        client.get("/"),
        client.get("/customer/authorize", params={"publishable_key": emu.publishable_key}),
        client.get("/customer/dashboard", params={"customer_id": customer.id}),
        client.get("/nowhere"),
    ]
    for response in pages:
        assert '<link rel="icon" type="image/svg+xml" href="data:image/svg+xml;base64,' in (
            response.text
        )
        assert "img-src data:" in response.headers["content-security-policy"]
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")
