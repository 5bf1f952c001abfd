"""The customer dashboard, the index, health, and the admin API (on and off)."""

from __future__ import annotations

import httpx
import pytest
from emulator_support import assert_problem, form_token, hidden_fields

from st_middleware.emulator import Customer, Emulator


def test_health(client: httpx.Client) -> None:
    response = client.get("/_emulator/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_dashboard_lists_charges_and_revokes(
    client: httpx.Client, emu: Emulator, customer: Customer, keys: dict[str, str]
) -> None:
    client.post(
        "/api/v1/transactions",
        json={**keys, "amountMicros": 3000},
        headers={"Idempotency-Key": "key-abc"},
    )
    client.post("/api/v1/charges", json={**keys, "currency": "usd", "amountMicros": 250_000})
    page = client.get("/customer/dashboard", params={"customer_id": customer.id})
    assert page.status_code == 200
    text = page.text
    assert "Ada Lovelace" in text
    assert "$0.003" in text
    assert "$0.25" in text
    assert "key-abc" in text
    assert "captured" in text
    assert "authorized" in text
    assert "$0.253 used of $1.00" in text
    button = f'id="revoke-{emu.publishable_key}"'
    assert button in text

    response = client.post("/customer/revoke", data=hidden_fields(text, "/customer/revoke"))
    assert response.status_code == 303
    assert response.headers["location"] == f"/customer/dashboard?customer_id={customer.id}"
    assert button not in client.get(response.headers["location"]).text
    response = client.post("/api/v1/transactions", json={**keys, "amountMicros": 1})
    assert_problem(response, 403, "authorization_revoked")


def test_dashboard_uses_the_cookie_set_by_sign_in(client: httpx.Client, emu: Emulator) -> None:
    customer = emu.create_customer(first_name="Cookie", last_name="Monster")
    form = {
        "publishable_key": emu.publishable_key,
        "redirect_uri": "http://localhost:1/cb",
        "response_type": "code",
        "customer_id": customer.id,
        "decision": "allow",
    }
    response = client.post("/customer/authorize", data={**form, **form_token(client, emu)})
    assert response.status_code == 303
    assert "Cookie Monster" in client.get("/customer/dashboard").text


def test_dashboard_without_a_customer_lists_them(client: httpx.Client, customer: Customer) -> None:
    response = client.get("/customer/dashboard")
    assert response.status_code == 200
    assert customer.id in response.text
    assert client.get("/customer/dashboard", params={"customer_id": "cus_x"}).status_code == 404


def test_index_links_to_the_dashboard(client: httpx.Client, customer: Customer) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "/customer/dashboard" in response.text
    assert customer.id in response.text
    assert "sk_test" not in response.text  # the secret key is never shown on a page


def test_unknown_page_is_404(client: httpx.Client) -> None:
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/customer/authorize").status_code == 405


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/_emulator/faults"),
        ("DELETE", "/_emulator/faults"),
        ("GET", "/_emulator/ledger"),
        ("POST", "/_emulator/customers"),
    ],
)
def test_admin_api_is_off_by_default(method: str, path: str) -> None:
    with Emulator(port=0) as emu, httpx.Client(base_url=emu.url) as client:
        response = client.request(method, path, json={"error": "server_error"})
        assert_problem(response, 404, "not_found")
        assert client.get("/_emulator/health").status_code == 200


def test_admin_customers_codes_ledger(client: httpx.Client, emu: Emulator) -> None:
    response = client.post(
        "/_emulator/customers",
        json={
            "first_name": "Alan",
            "last_name": "Turing",
            "email": "alan@example.com",
            "limit_micros": 5000,
        },
    )
    assert response.status_code == 201
    created = response.json()
    assert created["limit_micros"] == 5000
    assert created["live"] is False
    code = client.post("/_emulator/codes", json={"customer_id": created["id"]}).json()["code"]
    token = client.post(
        "/api/v1/oauth/tokens",
        json={
            "grantType": "authorization_code",
            "publishableKey": emu.publishable_key,
            "secretKey": emu.secret_key,
            "authorizationCode": code,
        },
    ).json()["accessToken"]
    client.post(
        "/api/v1/transactions",
        json={
            "publishableKey": emu.publishable_key,
            "secretKey": emu.secret_key,
            "accessToken": token,
            "amountMicros": 42,
        },
    )
    ledger = client.get("/_emulator/ledger", params={"customer_id": created["id"]}).json()
    assert [(r["kind"], r["captured_micros"]) for r in ledger] == [("transaction", 42)]
    assert client.post("/_emulator/revoke", json={"customer_id": created["id"]}).json() == {
        "revoked": 1
    }


def test_admin_rejects_bad_input(client: httpx.Client) -> None:
    assert_problem(
        client.post("/_emulator/customers", json={"limit_micros": "1"}), 422, "validation_error"
    )
    assert_problem(
        client.post("/_emulator/faults", json={"drop": "sideways"}), 422, "validation_error"
    )
    assert_problem(client.post("/_emulator/faults", json={"nonsense": 1}), 422, "validation_error")
    assert_problem(
        client.post("/_emulator/codes", json={"customer_id": "cus_nope"}), 422, "validation_error"
    )
    json_type = {"Content-Type": "application/json"}
    assert_problem(
        client.post("/_emulator/faults", content=b"{", headers=json_type), 400, "invalid_request"
    )
